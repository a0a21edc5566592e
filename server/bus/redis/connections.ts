/**
 * A node's two connections to Redis (ioredis): `command` carries every command and every PUBLISH, in the order
 * they are sent (one connection, so the events of a run leave in seq order); `subscriber` carries the node's
 * SUBSCRIBEs and the messages that arrive on them (a connection in subscriber mode can do nothing else).
 *
 * Both fail fast rather than queue while Redis is unreachable (enableOfflineQueue: false): a PUBLISH that
 * cannot go out is a gap the bus reports, a claim or a ticket that cannot be checked is refused now, not
 * minutes later. Both reconnect on their own, every second at most; ioredis then resubscribes the
 * subscriber's channels by itself (autoResubscribe, the default; its ready handler), and resends commands that
 * were written but not answered (autoResendUnfulfilledCommands).
 *
 * At start-up Redis may not be up yet (the machines of a deployment start together): connect() waits for both
 * connections up to `startupWaitMs` (the composition root passes DB_STARTUP_WAIT_MS, the same bounded wait as
 * for the database), saying every few seconds what it waits for, then fails with REDIS_URL, password masked.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../../logger.js';
import { maskPassword } from '../../store/database-target.js';
import { messageOf } from '../../../protocol/errors.js';

export class RedisUnreachableError extends Error {
  override name = 'RedisUnreachableError';
}

export interface RedisConnectionOptions {
  /** REDIS_URL (it may hold a password: only its masked form is logged). */
  url: string;
  /** Names the connections in Redis (CLIENT LIST): atoll:<node>:command, atoll:<node>:subscriber. */
  nodeId: string;
  /** How long connect() waits for an unreachable Redis before it fails. */
  startupWaitMs: number;
  log: Logger;
}

export interface RedisConnections {
  readonly command: Redis;
  readonly subscriber: Redis;
  /** REDIS_URL with its password replaced by `***`. */
  readonly masked: string;
  /** Connects both (once; later calls share the first); rejects with RedisUnreachableError after startupWaitMs. */
  connect(): Promise<void>;
  /** Whether each connection is up now (ready for commands), for the atoll_redis_connected gauge. */
  connected(): { connection: 'command' | 'subscriber'; up: boolean }[];
  /**
   * Resolves when both connections are up and Redis answers a PING on the command connection; rejects naming
   * what is wrong (a connection down and why, or Redis's error). The caller bounds the wait (/readyz: 1 s).
   */
  ping(): Promise<void>;
  /** Closes both: QUIT (replies still due are read first), or a hard close if Redis does not answer. */
  close(): Promise<void>;
}

/** A reply this slow means Redis is stuck: the caller is answered (with an error) rather than kept waiting. */
const COMMAND_TIMEOUT_MS = 5_000;
/** How long the last reconnection attempts are apart while Redis stays unreachable. */
const MAX_RETRY_DELAY_MS = 1_000;
/** How often start-up says that it is still waiting for Redis. */
const SAY_EVERY_MS = 5_000;

export function createRedisConnections(opts: RedisConnectionOptions): RedisConnections {
  const masked = maskPassword(opts.url);
  const options = (role: string): RedisOptions => ({
    lazyConnect: true,
    connectionName: `atoll:${opts.nodeId}:${role}`,
    enableOfflineQueue: false,
    commandTimeout: COMMAND_TIMEOUT_MS,
    // How long a hard close waits for the socket to end (ioredis waits the full time when it had already closed).
    disconnectTimeout: 200,
    retryStrategy: (times) => Math.min(times * 100, MAX_RETRY_DELAY_MS),
    // RESP2, the wire protocol of ioredis 5 that rate-limiter-flexible's reply parsing was written against
    // (ioredis 6 defaults to RESP3); pub/sub needs nothing of RESP3.
    protocol: 2,
  });
  const command = new Redis(opts.url, options('command'));
  const subscriber = new Redis(opts.url, options('subscriber'));
  // Errors come with every failed reconnection attempt: kept, and said once per outage (when it starts and ends).
  const lastError = new Map<Redis, string>();
  let connecting: Promise<void> | null = null;
  let closing = false;
  for (const [role, conn] of [['command', command], ['subscriber', subscriber]] as const) {
    let up = false;
    conn.on('error', (err: Error) => lastError.set(conn, err.message || String(err)));
    conn.on('ready', () => {
      if (!up) opts.log.info({ redis: masked, connection: role }, 'Redis connection ready');
      up = true;
      lastError.delete(conn);
    });
    conn.on('close', () => {
      if (up && !closing) opts.log.warn({ redis: masked, connection: role, reason: lastError.get(conn) ?? 'closed' }, 'Redis connection lost; reconnecting');
      up = false;
    });
  }

  async function connectBoth(): Promise<void> {
    const deadline = Date.now() + opts.startupWaitMs;
    for (const conn of [command, subscriber]) if (conn.status === 'wait') conn.connect().catch(() => undefined);
    let lastSaid = Date.now();
    while (command.status !== 'ready' || subscriber.status !== 'ready') {
      const now = Date.now();
      const reason = lastError.get(command) ?? lastError.get(subscriber) ?? 'no answer yet';
      if (command.status === 'end' || subscriber.status === 'end' || now >= deadline) {
        command.disconnect();
        subscriber.disconnect();
        throw new RedisUnreachableError(`cannot reach Redis REDIS_URL=${masked}: ${reason} (waited ${opts.startupWaitMs} ms, DB_STARTUP_WAIT_MS)`);
      }
      if (now - lastSaid >= SAY_EVERY_MS) {
        lastSaid = now;
        opts.log.warn({ redis: masked, reason, gives_up_in_ms: deadline - now }, 'waiting for Redis (REDIS_URL)');
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  const roles = [['command', command], ['subscriber', subscriber]] as const;
  return {
    command,
    subscriber,
    masked,
    connected: () => roles.map(([connection, conn]) => ({ connection, up: conn.status === 'ready' })),
    async ping() {
      for (const [role, conn] of roles) {
        if (conn.status !== 'ready') throw new Error(`the ${role} connection is ${conn.status}${lastError.has(conn) ? ` (${lastError.get(conn)})` : ''}`);
      }
      // Its status can still say ready for a moment after the socket closed: then PING fails with ioredis's own words.
      await command.ping().catch((err: unknown) => {
        throw new Error(`the command connection does not answer PING: ${messageOf(err)}`);
      });
    },
    connect() {
      connecting ??= connectBoth();
      return connecting;
    },
    async close() {
      closing = true;
      await Promise.all(
        [command, subscriber].map(async (conn) => {
          if (conn.status === 'end' || conn.status === 'wait') return conn.disconnect();
          // QUIT is refused while the connection is down (no offline queue): then just close it.
          await conn.quit().catch(() => conn.disconnect());
        }),
      );
    },
  };
}
