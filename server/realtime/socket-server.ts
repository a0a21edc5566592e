/**
 * socket.io: the handshake authenticates (token or single-use ticket → user id), each socket joins its own
 * user's room and no other, every client event is rate-limited and validated before use, and run events
 * reach each of the user's sockets through the delivery layer (exactly once, in order, with replay).
 */
import type { Server as HttpServer } from 'node:http';
import { Server, type Socket } from 'socket.io';
import type { TicketStore } from '../auth/tickets.js';
import type { Session, TokenService } from '../auth/tokens.js';
import type { Logger } from '../logger.js';
import { CodedError, toErrorBody, type ErrorBody } from '../protocol/errors.js';
import type { RunEventEnvelope } from '../protocol/events.js';
import { RefreshTokenBody, StartRunBody, StopRunBody, SubscribeRunBody, ThreadHistoryBody, normalizeInput, parse } from '../protocol/requests.js';
import { originAllowed } from '../http/origin.js';
import { messageView } from '../http/views.js';
import type { RunService } from '../runs/run-service.js';
import type { RunStore } from '../store/run-store.js';
import { createConnectionSlots } from './connection-slots.js';
import { createDelivery } from './delivery.js';
import type { RateLimiter } from './rate-limiter.js';

type Ack = (reply: unknown) => void;

export const roomOf = (userId: string) => `user:${userId}`;

export interface SocketServerDeps {
  http: HttpServer;
  tokens: TokenService;
  tickets: TicketStore;
  runs: RunService;
  store: RunStore;
  log: Logger;
  /** user, ip: messages; authFailures: failed handshakes per address. */
  limits: { user: RateLimiter; ip: RateLimiter; authFailures: RateLimiter };
  maxInputBytes: number;
  maxConnectionsPerUser: number;
  maxConnectionsPerIp: number;
  maxBufferedPackets: number;
  tokenExpiryWarningMs: number;
  onEventsDropped: (n: number) => void;
  /** CORS_ORIGINS: browser origins allowed besides the server's own. */
  corsOrigins: readonly string[];
}

/**
 * The transport's cap on one message, well above MAX_INPUT_BYTES: a message over MAX_INPUT_BYTES but under
 * this gets PAYLOAD_TOO_LARGE on its ack; only one over this is cut off by socket.io (the socket closes).
 */
export const transportCap = (maxInputBytes: number) => Math.max(4 * maxInputBytes + 64 * 1024, 1024 * 1024);

const REPLAY_PAGE = 500;

export function createSocketServer(deps: SocketServerDeps) {
  const { tokens, runs, store, log } = deps;
  const io = new Server(deps.http, {
    maxHttpBufferSize: transportCap(deps.maxInputBytes),
    serveClient: false,
    // A page of another origin cannot open a socket (browsers always send Origin; other clients need none).
    allowRequest: (req, callback) => {
      const ok = originAllowed(req.headers.origin, req.headers.host, deps.corsOrigins);
      callback(ok ? null : 'origin not allowed (CORS_ORIGINS)', ok);
    },
    ...(deps.corsOrigins.length > 0 ? { cors: { origin: [...deps.corsOrigins] } } : {}),
  });
  const delivery = createDelivery({ maxBufferedPackets: deps.maxBufferedPackets, onDropped: deps.onEventsDropped });
  const slots = createConnectionSlots({ perUser: deps.maxConnectionsPerUser, perIp: deps.maxConnectionsPerIp });
  const ipOf = (socket: Socket) => socket.handshake.address || 'unknown';

  /** The session of a handshake; a failed one costs its address a token of the failed-handshake budget. */
  function authenticate(socket: Socket): Session {
    const ip = ipOf(socket);
    deps.limits.authFailures.check(`ip:${ip}`, 'failed handshakes from this address');
    try {
      const auth = (socket.handshake.auth ?? {}) as { token?: unknown; ticket?: unknown };
      const session: Session = auth.ticket !== undefined ? deps.tickets.redeem(auth.ticket) : tokens.session(auth.token);
      if (session.expiresAt !== null && session.expiresAt <= Date.now()) throw new CodedError('UNAUTHORIZED', 'token expired');
      return session;
    } catch (err) {
      deps.limits.authFailures.spend(`ip:${ip}`);
      throw err;
    }
  }

  io.use((socket, next) => {
    try {
      const session = authenticate(socket);
      const release = slots.claim(socket.id, session.userId, ipOf(socket), socket.conn);
      // Released on disconnect, or when the transport closes before the socket ever connected.
      socket.data.releaseSlot = release;
      socket.conn.once('close', release);
      socket.data.userId = session.userId;
      socket.data.expiresAt = session.expiresAt;
      next();
    } catch (err) {
      const body = toErrorBody(err);
      next(Object.assign(new Error(body.code), { data: body }));
    }
  });

  const handlers: Record<string, (socket: Socket, payload: unknown) => Promise<unknown>> = {
    async start_agent(socket, payload) {
      const body = parse(StartRunBody, payload, 'start_agent payload');
      const run = await runs.start(socket.data.userId, {
        agent: body.agent,
        input: normalizeInput(body.input, deps.maxInputBytes),
        threadId: body.thread_id ?? null,
        correlationId: body.correlation_id ?? null,
        multitask: body.multitask,
      });
      return { run_id: run.id, thread_id: run.threadId, ...(run.deduplicated ? { deduplicated: true } : {}) };
    },
    async stop_agent(socket, payload) {
      const body = parse(StopRunBody, payload, 'stop_agent payload');
      const run = await runs.cancel(socket.data.userId, body.run_id);
      return { run_id: run.id, status: run.status };
    },
    async subscribe_run(socket, payload) {
      const body = parse(SubscribeRunBody, payload, 'subscribe_run payload');
      const run = await store.findRun(socket.data.userId, body.run_id);
      if (!run) throw new CodedError('NOT_FOUND', 'no such run');
      const lastSeq = await delivery.replay(socket, run.id, body.after_seq, (after) => store.listEvents(run, after, REPLAY_PAGE));
      return { run_id: run.id, last_seq: lastSeq };
    },
    async get_thread_history(socket, payload) {
      const body = parse(ThreadHistoryBody, payload, 'get_thread_history payload');
      const thread = await store.findThread(socket.data.userId, body.thread_id);
      if (!thread) throw new CodedError('NOT_FOUND', 'no such thread');
      const messages = await store.listMessages(thread.id, body.limit, body.after);
      const last = messages.at(-1);
      return { thread_id: thread.id, messages: messages.map(messageView), next_after: messages.length === body.limit && last ? last.id : null };
    },
    async refresh_token(socket, payload) {
      const body = parse(RefreshTokenBody, payload, 'refresh_token payload');
      const session = tokens.session(body.token);
      if (session.userId !== socket.data.userId) throw new CodedError('UNAUTHORIZED', 'the new token is for another user');
      socket.data.expiresAt = session.expiresAt;
      scheduleExpiry(socket);
      return { expires_at: session.expiresAt === null ? null : new Date(session.expiresAt).toISOString() };
    },
  };

  /** Warns a socket before its token expires and disconnects it at expiry unless it refreshed meanwhile. */
  function scheduleExpiry(socket: Socket): void {
    for (const t of (socket.data.expiryTimers as NodeJS.Timeout[] | undefined) ?? []) clearTimeout(t);
    const expiresAt = socket.data.expiresAt as number | null;
    if (expiresAt === null) return;
    const now = Date.now();
    const warnIn = Math.max(0, expiresAt - deps.tokenExpiryWarningMs - now);
    socket.data.expiryTimers = [
      setTimeout(() => socket.emit('token_expiring', { expires_at: new Date(expiresAt).toISOString() }), warnIn),
      setTimeout(() => {
        socket.emit('unauthorized', { error: { code: 'UNAUTHORIZED', message: 'token expired' } });
        socket.disconnect(true);
      }, Math.max(0, expiresAt - now)),
    ];
  }

  io.on('connection', (socket) => {
    const userId = socket.data.userId as string;
    const ip = ipOf(socket);
    void socket.join(roomOf(userId));
    delivery.add(userId, socket);
    scheduleExpiry(socket);
    socket.on('disconnect', () => {
      delivery.remove(userId, socket);
      for (const t of (socket.data.expiryTimers as NodeJS.Timeout[] | undefined) ?? []) clearTimeout(t);
      const release = socket.data.releaseSlot as () => void;
      socket.conn.off('close', release);
      release();
    });
    socket.onAny((event: unknown, ...args: unknown[]) => {
      const ack: Ack | null = typeof args.at(-1) === 'function' ? (args.at(-1) as Ack) : null;
      const name = typeof event === 'string' ? event : String(event);
      const fail = (error: ErrorBody & { retry_after_ms?: number }) => (ack ? ack({ error }) : socket.emit('request_error', { event: name.slice(0, 64), error }));
      try {
        // Every message costs a token of its user's and its address's budgets, known event or not.
        deps.limits.user.take(`user:${userId}`, 'messages for this user');
        deps.limits.ip.take(`ip:${ip}`, 'messages from this address');
      } catch (err) {
        const body = toErrorBody(err);
        return fail({ ...body, retry_after_ms: ((err as CodedError).retryAfterSeconds ?? 1) * 1000 });
      }
      const handler = Object.prototype.hasOwnProperty.call(handlers, name) ? handlers[name] : undefined;
      if (!handler) return fail({ code: 'BAD_REQUEST', message: `unknown event ${JSON.stringify(name.slice(0, 64))}` });
      const payload = ack ? (args.length > 1 ? args[0] : undefined) : args[0];
      handler(socket, payload).then(
        (reply) => ack?.(reply),
        (err) => {
          if (!(err instanceof CodedError)) log.error({ err: String((err as Error)?.stack ?? err), event: name, user_id: userId }, 'socket handler failed');
          const body = toErrorBody(err);
          fail((err as CodedError).retryAfterSeconds ? { ...body, retry_after_ms: (err as CodedError).retryAfterSeconds! * 1000 } : body);
        },
      );
    });
  });

  return {
    io,
    deliver(envelope: RunEventEnvelope): void {
      delivery.deliver(envelope);
    },
    /** Connected sockets (not engine.io connections: one of those may have tried to carry several). */
    connections: () => io.of('/').sockets.size,
  };
}
