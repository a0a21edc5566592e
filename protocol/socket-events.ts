/**
 * The socket.io contract, one map per direction, for `Server<ClientToServerEvents, ServerToClientEvents,
 * InterServerEvents, SocketData>` on the front and `Socket<ServerToClientEvents, ClientToServerEvents>` in
 * the browser. Types only (the browser bundles this file: no zod, no Node): the server still validates
 * every payload at the edge with protocol/requests.ts, whose schemas' input types a compile-time check in
 * server/realtime/socket-types.ts keeps equal to the payloads below.
 */
import type { ErrorBody } from './errors.js';
import type { RunEventEnvelope, RunEventType, RunStatus } from './events.js';
import type { MessageView, WireError } from './views.js';

/** An ack that failed: the coded error, and when retrying makes sense, how soon. */
export interface ErrorReply {
  error: WireError;
}

/** Every ack is the answer or an ErrorReply. */
export type Ack<T> = (reply: T | ErrorReply) => void;

export interface StartAgentPayload {
  agent: string;
  /** A string becomes `{ text }`; any JSON object goes as it is, if the agent takes it (AgentInfo.input). */
  input: string | { [key: string]: unknown };
  thread_id?: string;
  correlation_id?: string;
  multitask?: 'enqueue' | 'reject' | 'interrupt';
}
export interface StartAgentReply {
  run_id: string;
  thread_id: string;
  /** Set when an identical request of the same user was already accepted: this is that run. */
  deduplicated?: true;
}

export interface StopAgentPayload {
  run_id: string;
}
export interface StopAgentReply {
  run_id: string;
  status: RunStatus;
}

export interface SubscribeRunPayload {
  run_id: string;
  after_seq?: number;
}
export interface SubscribeRunReply {
  run_id: string;
  last_seq: number;
  /** Set when the replay stopped at its size cap: subscribe again from here for the rest. */
  next_after_seq: number | null;
}

export interface ThreadHistoryPayload {
  thread_id: string;
  limit?: number;
  after?: number;
}
export interface ThreadHistoryReply {
  thread_id: string;
  messages: MessageView[];
  next_after: number | null;
}

export interface RefreshTokenPayload {
  token: string;
}
export interface RefreshTokenReply {
  /** ISO time, or null for a token that does not expire. */
  expires_at: string | null;
}

export interface ClientToServerEvents {
  start_agent(payload: StartAgentPayload, ack: Ack<StartAgentReply>): void;
  stop_agent(payload: StopAgentPayload, ack: Ack<StopAgentReply>): void;
  subscribe_run(payload: SubscribeRunPayload, ack: Ack<SubscribeRunReply>): void;
  get_thread_history(payload: ThreadHistoryPayload, ack: Ack<ThreadHistoryReply>): void;
  refresh_token(payload: RefreshTokenPayload, ack: Ack<RefreshTokenReply>): void;
}

/** What each client event's ack answers when it succeeds. */
export type ReplyOf<E extends keyof ClientToServerEvents> = Exclude<Parameters<Parameters<ClientToServerEvents[E]>[1]>[0], ErrorReply>;
/** What each client event carries. */
export type PayloadOf<E extends keyof ClientToServerEvents> = Parameters<ClientToServerEvents[E]>[0];

/** Each run event goes out under its own type as event name, carrying its envelope. */
type RunEvents = { [T in RunEventType]: (envelope: RunEventEnvelope<T>) => void };

export interface ServerToClientEvents extends RunEvents {
  /** The socket fell too far behind on a run: replay it with subscribe_run from `last_seq`. */
  resync_required(payload: { run_id: string; last_seq: number }): void;
  token_expiring(payload: { expires_at: string }): void;
  /** The token expired: the server disconnects the socket right after. */
  unauthorized(payload: { error: ErrorBody }): void;
  server_shutdown(payload: { reason: string }): void;
  /**
   * The server disconnects this socket right after, and why: RATE_LIMITED when it kept sending past its refusals
   * (or had too many messages waiting); reconnect after `retry_after_ms`, and wait out each refusal's.
   */
  closing(payload: { error: WireError }): void;
  /** A client event sent without an ack failed (unknown event, invalid payload, rate limit). */
  request_error(payload: { event: string; error: WireError }): void;
}

/** Between nodes (socket.io's serverSideEmit): nothing yet. */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface InterServerEvents {}

/**
 * What the handshake establishes for a socket (`socket.data`). Plain data only: with a multi-node adapter
 * socket.data crosses nodes (fetchSockets), so node-local bookkeeping (timers, slot releases) stays out of it.
 */
export interface SocketData {
  userId: string;
  /** Epoch ms when the session ends, or null for a token that does not expire. */
  expiresAt: number | null;
}
