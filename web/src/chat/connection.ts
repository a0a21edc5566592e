/**
 * The socket: authenticated with the session's token at every (re)connection, reconnecting with
 * exponential backoff and jitter, and requests as promises that resolve with the ack or throw its coded
 * error. What to do on (re)connect is the page's business: it gets callbacks.
 */
import { io, type Socket } from 'socket.io-client';
import { ApiError } from '../shared/api';
import { isRunEventEnvelope as isEnvelope, type AnyRunEventEnvelope as Envelope } from '../../../protocol/events';
import type { ClientToServerEvents, PayloadOf, ReplyOf, ServerToClientEvents } from '../../../protocol/socket-events';
import { type WireError as ErrorBody } from '../../../protocol/views';

export type RequestName = keyof ClientToServerEvents;

export interface ConnectionEvents {
  /** `again` is false the first time, true after every reconnection. */
  connected(again: boolean): void;
  disconnected(reason: string): void;
  reconnecting(attempt: number): void;
  /** The handshake was refused with a coded error (UNAUTHORIZED: the session is over). */
  refused(error: ErrorBody): void;
  envelope(e: Envelope): void;
  resyncRequired(runId: string, lastSeq: number): void;
  /** The server is cutting this socket off (it sent too many messages): it reconnects after `retryAfterMs`. */
  closing(error: ErrorBody, retryAfterMs: number): void;
  tokenExpiring(expiresAt: string): void;
  serverShutdown(): void;
}

export interface Connection {
  /** Sends a client event and resolves with its ack's answer, or throws the ack's coded error. */
  request<E extends RequestName>(event: E, payload: PayloadOf<E>, timeoutMs?: number): Promise<ReplyOf<E>>;
  readonly connected: boolean;
  close(): void;
}

/** The longest wait a `closing` notice can impose on the page (a notice asking more is held to this). */
const MAX_COME_BACK_MS = 60_000;

export function openConnection(token: () => string, on: ConnectionEvents): Connection {
  const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io({
    auth: (cb) => cb({ token: token() }),
    // WebSocket first; long polling only when a WebSocket cannot be opened.
    transports: ['websocket', 'polling'],
    tryAllTransports: true,
    reconnectionDelay: 500,
    reconnectionDelayMax: 3000,
    randomizationFactor: 0.5,
  });
  let everConnected = false;
  /** When the server, cutting this socket off, asked it to come back (its `closing` notice's retry_after_ms). */
  let comeBackAt = 0;

  socket.on('connect', () => {
    on.connected(everConnected);
    everConnected = true;
  });
  socket.on('closing', ({ error }) => {
    const wait = Math.min(Math.max(error.retry_after_ms ?? 0, 0), MAX_COME_BACK_MS);
    comeBackAt = Date.now() + wait;
    on.closing(error, wait);
  });
  socket.on('disconnect', (reason) => {
    // The server closed this socket on purpose (token expired, or too many messages: then after the wait its
    // notice asked for): socket.io will not retry by itself.
    if (reason !== 'io server disconnect') return on.disconnected(reason);
    const wait = comeBackAt - Date.now();
    if (wait <= 0) {
      on.disconnected(reason);
      socket.connect();
    } else setTimeout(() => socket.connect(), wait);
  });
  socket.on('connect_error', (err: Error & { data?: ErrorBody }) => {
    if (!err.data?.code) return; // the server is unreachable: the manager retries with backoff
    on.refused(err.data);
    // A refused handshake is not retried by socket.io; one over a connection cap or a budget is worth another
    // try, not before the retry time a budget's refusal names.
    const notBefore = Math.min(Math.max(err.data.retry_after_ms ?? 0, 0), MAX_COME_BACK_MS);
    if (err.data.code !== 'UNAUTHORIZED' && !socket.active) setTimeout(() => socket.connect(), Math.max(notBefore, 2000) + Math.random() * 2000);
  });
  socket.io.on('reconnect_attempt', (n) => on.reconnecting(n));
  socket.on('resync_required', (p) => on.resyncRequired(p.run_id, p.last_seq));
  socket.on('token_expiring', (p) => on.tokenExpiring(p.expires_at));
  socket.on('server_shutdown', () => on.serverShutdown());
  socket.onAny((_name: string, payload: unknown) => {
    if (isEnvelope(payload)) on.envelope(payload);
  });

  return {
    async request<E extends RequestName>(event: E, payload: PayloadOf<E>, timeoutMs = 15_000): Promise<ReplyOf<E>> {
      let reply: (ReplyOf<E> & { error?: ErrorBody }) | undefined;
      // One call for every event name: socket.io's typed emitWithAck cannot pair a generic name with its payload.
      const timed = socket.timeout(timeoutMs) as unknown as { emitWithAck(event: E, payload: PayloadOf<E>): Promise<typeof reply> };
      try {
        reply = await timed.emitWithAck(event, payload);
      } catch {
        throw new ApiError('NO_ACK', `no acknowledgement of ${event} within ${timeoutMs / 1000} s`, 0);
      }
      if (reply && typeof reply === 'object' && reply.error) throw new ApiError(reply.error.code, reply.error.message, 0, reply.error.retry_after_ms ?? null);
      return reply as ReplyOf<E>;
    },
    get connected() {
      return socket.connected;
    },
    close() {
      socket.close();
    },
  };
}
