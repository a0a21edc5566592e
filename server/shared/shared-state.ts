/**
 * The small state that nodes of one deployment must share besides the store: connection tickets, rate-limit
 * buckets, connection counts and the requests being accepted right now (idempotency on one node: see
 * Accepting). Each is asynchronous so that an implementation may live outside the process.
 *
 * Every operation that checks and changes (redeem, take, claim) must be atomic in the implementation: callers
 * await it, so requests that arrive together interleave, and a separate check then change would let a burst
 * pass one check together (tests/limits-burst.test.ts pins the exact counts).
 *
 * One implementation per folder: in-process/ (one node: maps in memory), redis/ (several nodes: keys in
 * Redis, each check-and-change one atomic command or script).
 */
import type { Session } from '../auth/tokens.js';

/** How long a connection ticket is valid. */
export const TICKET_TTL_MS = 300_000;

export interface Tickets {
  /** A single-use ticket for `session`, valid TICKET_TTL_MS. */
  issue(session: Session): Promise<{ ticket: string; expires_in: number }>;
  /** Consumes the ticket: a second use, or a use after its lifetime, is UNAUTHORIZED. */
  redeem(ticket: unknown): Promise<Session>;
}

/** A token bucket per key: `rate` per second, bursts up to `burst`. */
export interface RateLimiter {
  /** Takes one token for `key` or throws RATE_LIMITED saying when to retry. */
  take(key: string, what: string): Promise<void>;
  /** Throws RATE_LIMITED like take when no token is left, without spending one. */
  check(key: string, what: string): Promise<void>;
}

/** Sockets connected (or being handshaked) per user and per address, against their caps. */
export interface ConnectionCounts {
  /** Claims a slot or throws RATE_LIMITED over a cap; returns the release (safe to call more than once). */
  claim(socketId: string, userId: string, ip: string): Promise<() => Promise<void>>;
}

/**
 * Requests being accepted right now, by idempotency key (user and correlation id): a duplicate that arrives
 * while the first is being accepted waits for the first one's answer. This only deduplicates concurrent
 * duplicates on one node: a duplicate sent to another node is not seen here. Across nodes, idempotency rests
 * on the store's unique key on (user, correlation_id) (issue 13 adds it); this stays as the cheap path that
 * spares the store the race on one node.
 */
export interface Accepting {
  /** Runs `accept` unless a request with `key` is already being accepted; then returns that one's result. */
  once<T>(key: string, accept: () => Promise<T>): Promise<{ value: T; duplicate: boolean }>;
}

export interface SharedState {
  tickets: Tickets;
  /** user, ip: messages and HTTP requests; authFailures: failed socket handshakes per address. */
  limits: { user: RateLimiter; ip: RateLimiter; authFailures: RateLimiter };
  connections: ConnectionCounts;
  accepting: Accepting;
  /** Starts what runs in the background (the in-process one: sweeps of forgotten entries). */
  start(): Promise<void>;
  stop(): Promise<void>;
}
