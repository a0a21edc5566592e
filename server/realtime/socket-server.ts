/**
 * socket.io: the handshake authenticates (token or single-use ticket → user id) and subscribes this node to
 * the user's events on the bus, every client event is rate-limited and validated before use, and run events,
 * received from the event bus, reach each of the user's sockets through the delivery layer (exactly once, in
 * order, with replay). Delivery is per socket, not per room: each socket has its own cursors and backpressure
 * (server/realtime/delivery.ts).
 */
import type { Server as HttpServer } from 'node:http';
import { Server } from 'socket.io';
import type { Session, TokenService } from '../auth/tokens.js';
import type { EventBus } from '../bus/event-bus.js';
import type { SocketSettings } from '../config-views.js';
import type { Logger } from '../logger.js';
import { CodedError, toErrorBody, type ErrorBody } from '../../protocol/errors.js';
import type { Ack, ClientToServerEvents, ReplyOf } from '../../protocol/socket-events.js';
import { RefreshTokenBody, StartRunBody, StopRunBody, SubscribeRunBody, ThreadHistoryBody, normalizeInput, parse, parseRunStart } from '../../protocol/requests.js';
import { budgetAddress, clientAddress, trustFunction } from '../http/client-address.js';
import { messageCap } from '../../protocol/requests.js';
import { originAllowed } from '../http/origin.js';
import { messageView, pageBySize } from '../http/views.js';
import type { RunService } from '../runs/run-service.js';
import type { SharedState } from '../shared/shared-state.js';
import type { RunRecord, RunStore } from '../store/store.js';
import { createConnectionSlots } from './connection-slots.js';
import { createDelivery } from './delivery.js';
import { closeNow, createEngineConnections } from './engine-connections.js';
import { SOCKET_FLOOD_LIMITS, createFloodGuard } from './flood-guard.js';
import { timeoutAt } from './timeout-at.js';
import type { AtollServer, AtollSocket } from './socket-types.js';
import { createUserSubscriptions } from './user-subscriptions.js';

/** What the front keeps about a socket on this node only (never in socket.data, which may cross nodes). */
interface SocketLocal {
  releaseSlot: () => void;
  /** Lets go of this socket's hold on its user's bus subscription. */
  releaseSubscription: () => void;
  /** The admission of its latest client event (see onAny): the next one is admitted after it. */
  admitted: Promise<void>;
  /** Cancels its token's expiry warning and expiry. */
  expiryTimers: (() => void)[];
  /** Large answers being prepared for it (see withRoom). */
  preparing: number;
}

export interface SocketServerDeps {
  http: HttpServer;
  tokens: TokenService;
  /** Where committed run events arrive from (any node's relay), subscribed per user while one of its sockets is here. */
  bus: EventBus;
  /** Tickets, connection counts and rate limits (user, ip: messages; authFailures: failed handshakes per address). */
  shared: Pick<SharedState, 'tickets' | 'limits' | 'connections'>;
  runs: RunService;
  store: RunStore;
  log: Logger;
  /** Input size, backpressure, stall and token-expiry budgets, allowed origins: the Config's fields by their own names (server/config.ts says what each means). */
  settings: SocketSettings;
  onEventsDropped: (n: number) => void;
  onStalledDisconnect: () => void;
}


/**
 * How long an engine.io connection may go without a socket (socket.io's CONNECT, handshake included): a real
 * client sends CONNECT with its first request; one that does not is an idle session holding memory.
 */
export const CONNECT_TIMEOUT_MS = 10_000;

/** How long a socket cut off for flooding has to take what was sent to it before its connection (TCP too) is closed regardless. */
const CUT_OFF_DRAIN_MS = 1000;

const REPLAY_PAGE = 500;
/** After a bus gap, the newest this many of a user's runs accepted since a socket connected are looked at for it. */
const MISSED_RUNS_MAX = 100;

export function createSocketServer(deps: SocketServerDeps) {
  const { tokens, runs, store, log } = deps;
  const { tickets, limits } = deps.shared;
  // The client address behind trusted proxies (TRUST_PROXY), by the rule express's req.ip follows, as the
  // per-address limits count it (an IPv6 one by its prefix: IPV6_BUDGET_PREFIX).
  const trust = trustFunction(deps.settings.trustProxy);
  const addressOf = (req: Parameters<typeof clientAddress>[0]) => budgetAddress(clientAddress(req, trust) || 'unknown', deps.settings.ipv6BudgetPrefix);
  // Twice the socket cap: room for a client's sockets and as many reconnecting or refused handshakes.
  const engines = createEngineConnections({
    maxPerAddress: 2 * deps.settings.maxConnectionsPerIp,
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
    addressOf,
    onRefusedPacket: (ip, why) => log.warn({ ip, why }, 'connection sent a packet it may not send; closed'),
  });
  const io: AtollServer = new Server(deps.http, {
    maxHttpBufferSize: messageCap(deps.settings.maxInputBytes),
    serveClient: false,
    // A backstop only: engine-connections.ts closes a connection without a socket first, discarding what it holds.
    // socket.io's own close would wait up to engine.io's close timeout (30 s) for a poll a bare session never sends.
    connectTimeout: 2 * CONNECT_TIMEOUT_MS,
    allowRequest: (req, callback) => {
      // A page of another origin cannot open a socket (browsers always send Origin; other clients need none).
      if (!originAllowed(req.headers.origin, req.headers.host, deps.settings.corsOrigins)) return callback('origin not allowed (CORS_ORIGINS)', false);
      const refused = engines.refusal(req);
      callback(refused, refused === null);
    },
    ...(deps.settings.corsOrigins.length > 0 ? { cors: { origin: [...deps.settings.corsOrigins] } } : {}),
  });
  const maxAckBytes = Math.floor(deps.settings.socketMaxBufferedBytes / 4);
  const delivery = createDelivery({ maxBufferedPackets: deps.settings.socketMaxBufferedPackets, maxBufferedBytes: deps.settings.socketMaxBufferedBytes, maxAckBytes, onDropped: deps.onEventsDropped, eventOneMissing: followMissingStarts });
  const local = new WeakMap<AtollSocket, SocketLocal>();
  const localOf = (socket: AtollSocket): SocketLocal => {
    let l = local.get(socket);
    if (!l) local.set(socket, (l = { releaseSlot: () => undefined, releaseSubscription: () => undefined, admitted: Promise.resolve(), expiryTimers: [], preparing: 0 }));
    return l;
  };
  /**
   * Runs `answer` (one that can be large: a history page, a replay) if the socket has room for it: its unsent
   * bytes plus a full-size answer for each one already being prepared stay within its budget. Counting the
   * ones being prepared matters: a burst of requests all passes a check of what was already sent.
   */
  async function withRoom<T>(socket: AtollSocket, answer: () => Promise<T>): Promise<T> {
    const l = localOf(socket);
    if (!hasRoom(socket)) {
      throw new CodedError('RATE_LIMITED', `this connection has ${delivery.bufferedBytes(socket)} bytes it has not read yet and ${l.preparing} answers on their way (SOCKET_MAX_BUFFERED_BYTES=${deps.settings.socketMaxBufferedBytes}); read them, then retry`, { retryAfterSeconds: 1 });
    }
    l.preparing++;
    try {
      return await answer();
    } finally {
      l.preparing--;
    }
  }
  function hasRoom(socket: AtollSocket): boolean {
    return !delivery.overBudget(socket) && delivery.bufferedBytes(socket) + (localOf(socket).preparing + 1) * maxAckBytes <= deps.settings.socketMaxBufferedBytes;
  }
  /**
   * Sends a socket the log of a run it missed and did not ask for (below), within its budget as an asked replay is:
   * without room it is told resync_required from 0 and asks with subscribe_run once it reads again. Unbudgeted, a
   * socket that read nothing was sent up to MISSED_RUNS_MAX logs of up to maxAckBytes each after one bus gap.
   */
  async function replayUnasked(socket: AtollSocket, run: RunRecord): Promise<'sent' | 'asked'> {
    if (!hasRoom(socket)) {
      delivery.askResync(socket, run.id, 0);
      return 'asked';
    }
    const l = localOf(socket);
    l.preparing++;
    try {
      const replayed = await delivery.replay(socket, run.id, 0, (after) => store.listEvents(run, after, REPLAY_PAGE, maxAckBytes));
      if (replayed.nextAfterSeq != null) delivery.askResync(socket, run.id, replayed.nextAfterSeq);
      return 'sent';
    } finally {
      l.preparing--;
    }
  }
  /**
   * A socket that takes nothing of what it was sent holds memory here until it goes: past the time budget
   * it is cut off (its unsent data discarded), and says so in the log and a metric.
   */
  function sweepStalled(): void {
    for (const { socket, bytes, stalledMs } of delivery.stalled(deps.settings.socketStallTimeoutMs)) {
      log.warn({ socket_id: socket.id, user_id: socket.data.userId, buffered_bytes: bytes, stalled_ms: stalledMs }, 'socket stalled; disconnected');
      deps.onStalledDisconnect();
      delivery.remove(socket.data.userId, socket);
      socket.conn.close(true);
    }
  }
  let stallSweep: NodeJS.Timeout | null = null;
  /** Messages received and not yet answered (a stopping node answers them before it closes its sockets). */
  let unanswered = 0;
  function countUnanswered(): () => void {
    unanswered += 1;
    let settled = false;
    return () => {
      if (!settled) unanswered -= 1;
      settled = true;
    };
  }
  const subscriptions = createUserSubscriptions(deps.bus, (userId) => ({
    onEvent: (envelope) => delivery.deliver(envelope),
    onGap: () => {
      delivery.gap(userId);
      void announceMissedRuns(userId);
    },
  }));

  /**
   * After a bus gap (Redis was away), the runs the user started meanwhile on another node reached none of this
   * node's sockets: each socket is sent the log of every run of its user accepted since it connected that it
   * does not know, then follows it live (a run still going) as if it had seen it start. Not one accepted before
   * it connected: a client joins those with subscribe_run from its own cursor (it may have seen them on an
   * earlier socket).
   */
  async function announceMissedRuns(userId: string): Promise<void> {
    for (const { socket, since, knows } of delivery.socketStates(userId)) {
      const runs = await store.listRunsSince(userId, new Date(since), MISSED_RUNS_MAX).catch(() => []);
      const missed = { sent: 0, asked: 0, failed: 0 };
      for (const run of runs) {
        if (knows(run.id)) continue;
        missed[
          await replayUnasked(socket, run).catch(() => {
            // Its log could not be read (the database did not answer): the socket now counts it as known (a cursor
            // where the replay stopped), and no later gap names it again. Told to ask, it asks once it can.
            delivery.askResync(socket, run.id, 0);
            return 'failed' as const;
          })
        ]++;
      }
      if (missed.sent + missed.asked + missed.failed > 0) log.info({ socket_id: socket.id, user_id: userId, ...missed }, 'runs missed during a bus gap sent or announced');
    }
  }
  /**
   * Runs whose later events reached a socket but whose event 1 never did (the node that accepted them died
   * before publishing it): those accepted since the socket joined are sent from the log and followed live; the
   * others it joined mid-stream and leaves to subscribe_run, as any run under way when it connected.
   */
  async function followMissingStarts(socket: AtollSocket, since: number, runIds: string[]): Promise<string[]> {
    const notFollowed: string[] = [];
    for (const runId of runIds) {
      if (socket.disconnected) break;
      const run = await store.findRun(socket.data.userId, runId);
      if (!run || run.queuedAt.getTime() < since) {
        notFollowed.push(runId);
        continue;
      }
      await replayUnasked(socket, run);
    }
    return notFollowed;
  }
  io.engine.on('connection', (conn: Parameters<typeof engines.track>[0]) => engines.track(conn));
  const slots = createConnectionSlots(deps.shared.connections);
  const ipOf = (socket: AtollSocket) => addressOf({ headers: socket.handshake.headers, socket: { remoteAddress: socket.handshake.address } });

  /**
   * The session of a handshake; a failed one costs its address a token of the failed-handshake budget.
   * The failure takes its token (take, atomic) rather than spending it after a check: handshakes are
   * awaited concurrently, so a burst of failures all passes the check before any of them is counted.
   */
  async function authenticate(socket: AtollSocket): Promise<Session> {
    const key = `ip:${ipOf(socket)}`;
    const what = 'failed handshakes from this address';
    await limits.authFailures.check(key, what);
    try {
      const auth = (socket.handshake.auth ?? {}) as { token?: unknown; ticket?: unknown };
      const session: Session = auth.ticket !== undefined ? await tickets.redeem(auth.ticket) : tokens.session(auth.token);
      if (session.expiresAt !== null && session.expiresAt <= Date.now()) throw new CodedError('UNAUTHORIZED', 'token expired');
      return session;
    } catch (err) {
      // Redis unreachable is no failed handshake: a client retrying each second through an outage must not
      // find itself rate limited when Redis comes back.
      if (!(err instanceof CodedError && err.code === 'REDIS_UNAVAILABLE')) await limits.authFailures.take(key, what);
      throw err;
    }
  }

  /**
   * Holds the user's bus subscription for this socket until it disconnects or its transport closes (socket.io
   * connects no socket whose transport closed during the handshake, and then says nothing of it).
   */
  async function holdSubscription(socket: AtollSocket, userId: string): Promise<() => void> {
    const release = await subscriptions.hold(userId);
    if (socket.conn.readyState !== 'open') {
      release();
      throw new CodedError('BAD_REQUEST', 'the connection closed during the handshake');
    }
    socket.conn.once('close', release);
    return release;
  }

  /**
   * Authenticates the handshake, claims its connection slot and holds its user's bus subscription, both
   * released on disconnect or transport close. The subscription is in place before the socket connects: a
   * run started right after connecting is followed from its first event.
   */
  async function admit(socket: AtollSocket): Promise<void> {
    // A handshake costs the front more than a message (~1.5 ms: the transport, the token, the slot, the bus
    // subscription), so it spends a token of the same budgets as every request: unbudgeted, one signed-in user
    // connecting and disconnecting in a loop (~300 a second from one client process) took half of the front's core.
    await limits.ip.take(`ip:${ipOf(socket)}`, 'requests from this address');
    const session = await authenticate(socket);
    await limits.user.take(`user:${session.userId}`, 'requests for this user');
    const l = localOf(socket);
    l.releaseSlot = await slots.claim(socket.id, session.userId, ipOf(socket), socket.conn);
    try {
      l.releaseSubscription = await holdSubscription(socket, session.userId);
    } catch (err) {
      l.releaseSlot();
      throw err;
    }
    socket.data.userId = session.userId;
    socket.data.expiresAt = session.expiresAt;
    // socket.io keeps the handshake for the socket's life: nothing of what the client sent to sign in is kept.
    socket.handshake.auth = {};
  }

  io.use((socket, next) => {
    admit(socket).then(
      () => next(),
      (err) => {
        // A refusal is the client's to act on; anything uncoded is a bug of ours, which the client sees only as
        // INTERNAL: said here, as the HTTP side's error handler does.
        if (!(err instanceof CodedError)) log.error({ err: String((err as Error)?.stack ?? err), socket_id: socket.id }, 'unhandled socket handshake error');
        const body = toErrorBody(err);
        const retry = (err as CodedError).retryAfterSeconds;
        next(Object.assign(new Error(body.code), { data: retry ? { ...body, retry_after_ms: retry * 1000 } : body }));
      },
    );
  });

  /** One per client event: the payload arrives unchecked (parsed here), the answer is the contract's ack. */
  const handlers: { [E in keyof ClientToServerEvents]: (socket: AtollSocket, payload: unknown) => Promise<ReplyOf<E>> } = {
    async start_agent(socket, payload) {
      const body = parseRunStart(StartRunBody, payload, 'start_agent payload', deps.settings.maxInputBytes);
      const run = await runs.start(socket.data.userId, {
        agent: body.agent,
        input: normalizeInput(body.input, deps.settings.maxInputBytes),
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
      return withRoom(socket, async () => {
        const run = await store.findRun(socket.data.userId, body.run_id);
        if (!run) throw new CodedError('NOT_FOUND', 'no such run');
        const replayed = await delivery.replay(socket, run.id, body.after_seq, (after) => store.listEvents(run, after, REPLAY_PAGE, maxAckBytes));
        return { run_id: run.id, last_seq: replayed.lastSeq, next_after_seq: replayed.nextAfterSeq };
      });
    },
    async get_thread_history(socket, payload) {
      const body = parse(ThreadHistoryBody, payload, 'get_thread_history payload');
      return withRoom(socket, async () => {
        const thread = await store.findThread(socket.data.userId, body.thread_id);
        if (!thread) throw new CodedError('NOT_FOUND', 'no such thread');
        const page = pageBySize((await store.listMessages(thread.id, body.limit, body.after, maxAckBytes)).map(messageView), body.limit, maxAckBytes);
        return { thread_id: thread.id, messages: page.items, next_after: page.nextAfter };
      });
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
  function scheduleExpiry(socket: AtollSocket): void {
    const l = localOf(socket);
    for (const cancel of l.expiryTimers) cancel();
    l.expiryTimers = [];
    const expiresAt = socket.data.expiresAt;
    // A refresh_token admitted after its socket left (its rate-limit take awaited): timers armed now would keep
    // the socket until its token expires, since its disconnect handler has cancelled the last ones already.
    if (expiresAt === null || socket.disconnected) return;
    // timeoutAt, not setTimeout: a token may live longer than a Node timer can wait (~24.8 days).
    l.expiryTimers = [
      timeoutAt(expiresAt - deps.settings.tokenExpiryWarningMs, () => socket.emit('token_expiring', { expires_at: new Date(expiresAt).toISOString() })),
      timeoutAt(expiresAt, () => {
        socket.emit('unauthorized', { error: { code: 'UNAUTHORIZED', message: 'token expired' } });
        socket.disconnect(true);
      }),
    ];
  }

  io.on('connection', (socket) => {
    const userId = socket.data.userId;
    const ip = ipOf(socket);
    const l = localOf(socket);
    const guard = createFloodGuard(SOCKET_FLOOD_LIMITS);
    engines.socketJoined(socket.conn);
    delivery.add(userId, socket);
    scheduleExpiry(socket);
    socket.on('disconnect', () => {
      delivery.remove(userId, socket);
      for (const cancel of l.expiryTimers) cancel();
      l.releaseSlot();
      l.releaseSubscription();
    });
    // Every event goes through one gate (rate limits, unknown names, validation), so it is read untyped here
    // and each handler parses its payload with its schema.
    //
    // Admission is chained per socket so handlers start in arrival order: the rate-limit takes are awaited,
    // and with a remote limiter a start_agent then stop_agent could otherwise overtake each other. Only the
    // admission is chained, not the handlers: handlers run concurrently as before, so a slow one (a large
    // replay, a run's acceptance) never holds up the socket's later messages.
    socket.onAny((event: unknown, ...args: unknown[]) => {
      if (socket.disconnected) return;
      if (!guard.arrive()) return cutOff(`over ${SOCKET_FLOOD_LIMITS.maxWaiting} messages waiting for admission`);
      const settle = countUnanswered();
      l.admitted = l.admitted
        .then(async () => {
          try {
            // Messages already queued when the socket was cut off cost nothing more.
            const handling = socket.disconnected ? null : await admitEvent(event, args);
            if (handling) void handling.answered.finally(settle);
            else settle();
          } finally {
            guard.settle();
          }
        })
        // A rejected link would skip every later message of the socket: log it and go on.
        .catch((err) => {
          settle();
          log.error({ err: String((err as Error)?.stack ?? err), user_id: userId }, 'socket event admission failed');
        });
    });
    /** Disconnects a flooding socket, telling it why and when to come back (if it reads at all). */
    function cutOff(why: string): void {
      if (socket.disconnected) return;
      log.warn({ socket_id: socket.id, user_id: userId, why }, 'socket flooding; disconnected');
      socket.emit('closing', { error: { code: 'RATE_LIMITED', message: `${why}: disconnected; wait retry_after_ms after each RATE_LIMITED`, retry_after_ms: SOCKET_FLOOD_LIMITS.windowMs } });
      const conn = socket.conn;
      // Its unsent packets go first, the notice among them (the connection ignores what it receives meanwhile).
      // A flooder that reads nothing would keep them, or its WebSocket's closing handshake (ws waits 30 s, reading
      // and ignoring what it still sends), for as long as it likes: after a moment, closed regardless. Also when
      // the engine.io connection already reads closed: its WebSocket may still be waiting for the peer.
      socket.disconnect(true);
      setTimeout(() => closeNow(conn), CUT_OFF_DRAIN_MS).unref();
    }
    /** Takes the message's rate-limit tokens, then starts its handler without waiting for it (`answered`). */
    async function admitEvent(event: unknown, args: unknown[]): Promise<{ answered: Promise<void> } | null> {
      type AnyAck = Ack<ReplyOf<keyof ClientToServerEvents>>;
      const ack: AnyAck | null = typeof args.at(-1) === 'function' ? (args.at(-1) as AnyAck) : null;
      const name = typeof event === 'string' ? event : String(event);
      const fail = (error: ErrorBody & { retry_after_ms?: number }): void => void (ack ? ack({ error }) : socket.emit('request_error', { event: name.slice(0, 64), error }));
      try {
        // Every message costs a token of its user's and its address's budgets, known event or not.
        await limits.user.take(`user:${userId}`, 'messages for this user');
        await limits.ip.take(`ip:${ip}`, 'messages from this address');
      } catch (err) {
        // An INTERNAL answer is logged, as the handlers' are (a limiter's store failing in a way it does not cover).
        if (!(err instanceof CodedError)) log.error({ err: String((err as Error)?.stack ?? err), event: typeof event === 'string' ? event.slice(0, 64) : null, user_id: userId }, 'rate limit check failed');
        const body = toErrorBody(err);
        if (body.code === 'RATE_LIMITED' && !guard.refused()) cutOff(`over ${SOCKET_FLOOD_LIMITS.maxRefusals} messages refused RATE_LIMITED within ${SOCKET_FLOOD_LIMITS.windowMs / 1000} s`);
        else fail({ ...body, retry_after_ms: ((err as CodedError).retryAfterSeconds ?? 1) * 1000 });
        return null;
      }
      const handler = Object.prototype.hasOwnProperty.call(handlers, name) ? handlers[name as keyof ClientToServerEvents] : undefined;
      if (!handler) {
        fail({ code: 'BAD_REQUEST', message: `unknown event ${JSON.stringify(name.slice(0, 64))}` });
        return null;
      }
      const payload = ack ? (args.length > 1 ? args[0] : undefined) : args[0];
      const answered = handler(socket, payload).then(
        (reply) => ack?.(reply),
        (err) => {
          if (!(err instanceof CodedError)) log.error({ err: String((err as Error)?.stack ?? err), event: name, user_id: userId }, 'socket handler failed');
          const body = toErrorBody(err);
          fail((err as CodedError).retryAfterSeconds ? { ...body, retry_after_ms: (err as CodedError).retryAfterSeconds! * 1000 } : body);
        },
      );
      return { answered };
    }
  });

  return {
    io,
    /** Connected sockets (not engine.io connections: one of those may have tried to carry several). */
    connections: () => io.of('/').sockets.size,
    /** Messages the sockets sent that have no answer yet. */
    unanswered: () => unanswered,
    /** Bytes sent to sockets and not yet taken by them. */
    outboundBytes: () => delivery.outboundBytes(),
    /** Starts the stall sweep (the bus's events arrive per user, subscribed as their sockets connect). */
    start(): void {
      if (!stallSweep) {
        stallSweep = setInterval(sweepStalled, Math.min(1000, deps.settings.socketStallTimeoutMs));
        stallSweep.unref();
      }
    },
    /** Stops the sweep and lets go of every user's bus subscription: no event reaches a socket after it. */
    stop(): void {
      subscriptions.clear();
      if (stallSweep) clearInterval(stallSweep);
      stallSweep = null;
    },
  };
}
