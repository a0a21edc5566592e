/**
 * A logical client of a cluster (one browser tab of a user): one socket at a time, to one node, replaced by a
 * socket to another node when the client moves or its node goes away, resuming every run it follows with
 * subscribe_run from the last seq it has (its cursor), exactly as the chat page does. It also answers
 * `resync_required` with subscribe_run. It does NOT close gaps on its own: a socket must get its events in
 * order without help, and the checker judges what each socket received (checks/streams.ts).
 * Records everything in a ClientLog (history.ts).
 */
import jwt from 'jsonwebtoken';
import { io, type Socket } from 'socket.io-client';
import type { ClientLog, Envelope, SocketLog, StartRequest } from './history.js';

export interface NodeAddress {
  nodeId: string;
  url: string;
}

/** Picks a node to connect to (not `avoid` when another is up); null when none is up. */
export type NodeChooser = (avoid: string | null) => NodeAddress | null;

export interface ClientOptions {
  ackTimeoutMs: number;
  /** How long to keep trying to connect before giving up on one attempt to (re)connect. */
  connectTimeoutMs: number;
}

export function signToken(secret: string, userId: string, ttlSeconds = 6 * 3600): string {
  return jwt.sign({}, secret, { algorithm: 'HS256', subject: userId, expiresIn: ttlSeconds });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type StartPayload = { agent: string; input: unknown; thread_id?: string; correlation_id?: string; multitask?: string };

export class ClusterClient {
  readonly log: ClientLog;
  /** Shutdown notices (`server_shutdown`) received, by node. */
  readonly shutdownNotices: string[] = [];
  private socket: Socket | null = null;
  private current: SocketLog | null = null;
  private readonly cursors = new Map<string, number>();
  private readonly finished = new Set<string>();
  private final = false;
  private closed = false;
  private queue: Promise<unknown> = Promise.resolve();
  /** subscribe_run in progress per run, and the runs asked again meanwhile. */
  private readonly subscribing = new Map<string, Promise<boolean>>();
  private readonly subscribeAgain = new Set<string>();
  /** The replays of the latest (re)connection. */
  private resuming: Promise<void> = Promise.resolve();
  private socketSeq = 0;
  private readonly waiters = new Set<() => void>();

  constructor(
    id: string,
    readonly userId: string,
    readonly token: string,
    private readonly choose: NodeChooser,
    private readonly opts: ClientOptions,
  ) {
    this.log = { id, userId, sockets: [], follows: [], notes: [] };
  }

  get connected(): boolean {
    return this.socket?.connected === true;
  }

  get node(): string | null {
    return this.current?.closedAt === null ? this.current.node : null;
  }

  /** The last seq this client has of a run (0: none). */
  cursor(runId: string): number {
    return this.cursors.get(runId) ?? 0;
  }

  hasFinished(runId: string): boolean {
    return this.finished.has(runId);
  }

  follow(runId: string): void {
    if (!this.log.follows.includes(runId)) this.log.follows.push(runId);
  }

  /**
   * Connects to a node (the chooser's pick, or `target`), trying others until one answers or time is up. Every
   * connect and move is queued behind the previous one: a client never has two sockets at once.
   */
  connect(target: NodeAddress | null = null): Promise<boolean> {
    return this.serially(() => (this.connected ? Promise.resolve(true) : this.connectNow(target)));
  }

  /** The client moves: closes its socket and connects to another node (or `target`). */
  moveTo(target: NodeAddress | null = null): Promise<boolean> {
    return this.serially(() => {
      const from = this.node;
      this.drop('client');
      return this.connectNow(target ?? this.choose(from));
    });
  }

  private serially(op: () => Promise<boolean>): Promise<boolean> {
    const next = this.queue.then(op, op);
    this.queue = next.catch(() => false);
    return next;
  }

  private async connectNow(target: NodeAddress | null): Promise<boolean> {
    const deadline = Date.now() + this.opts.connectTimeoutMs;
    let avoid: string | null = null;
    while (!this.closed && Date.now() < deadline) {
      const node: NodeAddress | null = target ?? this.choose(avoid);
      target = null;
      if (!node) {
        await sleep(200);
        continue;
      }
      if (await this.open(node)) {
        // Not awaited: a start or a move need not wait for the replays (catchUp does).
        this.resuming = this.resume();
        return true;
      }
      avoid = node.nodeId;
      await sleep(100);
    }
    return false;
  }

  private open(node: NodeAddress): Promise<boolean> {
    return new Promise((resolve) => {
      const socket = io(node.url, { auth: { token: this.token }, transports: ['websocket'], reconnection: false, forceNew: true, timeout: this.opts.connectTimeoutMs });
      // socket.io's own timeout covers the transport, not the handshake's answer (a node paused, or stuck in its
      // middleware): bound the whole of it.
      const timer = setTimeout(() => {
        this.log.notes.push(`${Date.now()} handshake with ${node.nodeId} not answered in ${this.opts.connectTimeoutMs} ms`);
        socket.removeAllListeners();
        socket.close();
        resolve(false);
      }, this.opts.connectTimeoutMs);
      const log: SocketLog = { id: `${this.log.id}.s${++this.socketSeq}`, node: node.nodeId, connectedAt: 0, closedAt: null, closedBy: null, received: [] };
      socket.onAny((_name: string, payload: unknown) => {
        if (payload && typeof payload === 'object' && 'seq' in payload && 'run_id' in payload) this.receive(log, payload as Envelope);
      });
      socket.on('resync_required', (p: { run_id: string }) => {
        if (this.socket === socket) void this.subscribe(p.run_id);
      });
      socket.on('server_shutdown', () => {
        this.shutdownNotices.push(node.nodeId);
        // Told to go elsewhere: do so at once rather than wait for the close.
        if (this.socket === socket) this.onLost(socket, log, 'server');
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        log.connectedAt = Date.now();
        this.log.sockets.push(log);
        this.socket = socket;
        this.current = log;
        socket.once('disconnect', (reason) => this.onLost(socket, log, reason === 'io client disconnect' ? 'client' : 'server'));
        resolve(true);
      });
      socket.once('connect_error', (err) => {
        clearTimeout(timer);
        this.log.notes.push(`${Date.now()} connect to ${node.nodeId} refused: ${err.message}`);
        socket.close();
        resolve(false);
      });
    });
  }

  private receive(socket: SocketLog, e: Envelope): void {
    socket.received.push({ envelope: e, at: Date.now(), final: this.final });
    if (e.user_id !== this.userId) return;
    this.follow(e.run_id);
    this.cursors.set(e.run_id, Math.max(this.cursor(e.run_id), e.seq));
    if (e.type === 'agent_completed') this.finished.add(e.run_id);
    for (const w of this.waiters) w();
  }

  private onLost(socket: Socket, log: SocketLog, by: 'client' | 'server'): void {
    if (log.closedAt === null) {
      log.closedAt = Date.now();
      log.closedBy = by;
    }
    socket.removeAllListeners();
    socket.close();
    if (this.socket !== socket) return;
    this.socket = null;
    if (by === 'server' && !this.closed) {
      const from = log.node;
      void this.serially(async () => (this.connected || this.closed ? true : this.connectNow(this.choose(from))));
    }
  }

  private drop(by: 'client' | 'server'): void {
    if (this.socket && this.current) this.onLost(this.socket, this.current, by);
  }

  /** Waits for the connects and moves queued so far. */
  async settled(): Promise<void> {
    await this.queue;
  }

  /**
   * Resumes every followed run not finished, from the cursor, one at a time: a node answers only a few replays
   * of one socket at once (RATE_LIMITED beyond them), as it bounds what a socket may have on its way.
   */
  private async resume(): Promise<void> {
    const socket = this.socket;
    for (const id of this.log.follows.filter((runId) => !this.finished.has(runId))) {
      // A failure other than RATE_LIMITED (retried inside) means this socket is gone: the next one resumes.
      if (this.socket !== socket || !(await this.subscribe(id))) return;
    }
  }

  /**
   * subscribe_run from the cursor, page after page, on the current socket; false if it could not. One at a time
   * per run, as a careful client does: asked again meanwhile (a resync notice during a resume), it subscribes
   * once more when the first is done, from the cursor it then has.
   */
  subscribe(runId: string): Promise<boolean> {
    const running = this.subscribing.get(runId);
    if (running) {
      this.subscribeAgain.add(runId);
      return running;
    }
    const next = this.subscribeNow(runId).then(async (ok) => {
      this.subscribing.delete(runId);
      if (!this.subscribeAgain.delete(runId)) return ok;
      return this.subscribe(runId);
    });
    this.subscribing.set(runId, next);
    return next;
  }

  private async subscribeNow(runId: string): Promise<boolean> {
    for (let pages = 0, tries = 0; pages < 100 && tries < 200; tries++) {
      const socket = this.socket;
      if (!socket) return false;
      let ack: { error?: { code?: string }; next_after_seq?: number | null };
      const after = this.cursor(runId);
      try {
        ack = await socket.timeout(this.opts.ackTimeoutMs).emitWithAck('subscribe_run', { run_id: runId, after_seq: after });
      } catch (err) {
        this.log.notes.push(`${Date.now()} subscribe_run ${runId} after ${after} on ${this.current?.id}: ${(err as Error).message}`);
        return false;
      }
      if (ack.error) {
        this.log.notes.push(`${Date.now()} subscribe_run ${runId} after ${after} on ${this.current?.id}: ${JSON.stringify(ack.error)}`);
        const wait = (ack.error as { retry_after_ms?: number }).retry_after_ms;
        if (ack.error.code === 'RATE_LIMITED' && typeof wait === 'number' && tries < 20) {
          await sleep(Math.min(wait, 2000));
          continue;
        }
        return false;
      }
      if (typeof ack.next_after_seq !== 'number') return true;
      pages++;
    }
    return false;
  }

  /** start_agent on the current socket; the request's record (history.ts) is filled in. */
  async start(req: StartRequest, payload: StartPayload): Promise<StartRequest> {
    const socket = this.socket;
    req.node = this.current?.node ?? '-';
    req.sentAt = Date.now();
    if (!socket || !socket.connected) {
      req.outcome = { kind: 'lost', reason: 'not connected' };
      return req;
    }
    try {
      const ack = await socket.timeout(this.opts.ackTimeoutMs).emitWithAck('start_agent', payload);
      req.answeredAt = Date.now();
      if (ack?.error) req.outcome = { kind: 'refused', code: String(ack.error.code), message: String(ack.error.message) };
      else {
        req.outcome = { kind: 'accepted', runId: ack.run_id, threadId: ack.thread_id, deduplicated: ack.deduplicated === true };
        this.follow(ack.run_id);
      }
    } catch (err) {
      req.outcome = { kind: 'lost', reason: (err as Error).message };
    }
    return req;
  }

  /** stop_agent on the current socket: the ack, or null when there was none. */
  async stop(runId: string): Promise<{ status?: string; error?: { code: string } } | null> {
    const socket = this.socket;
    if (!socket?.connected) return null;
    try {
      return await socket.timeout(this.opts.ackTimeoutMs).emitWithAck('stop_agent', { run_id: runId });
    } catch {
      return null;
    }
  }

  /** Any acknowledged request on the current socket (get_thread_history…): the ack, or null. */
  async ask(event: string, payload: unknown): Promise<any> {
    const socket = this.socket;
    if (!socket?.connected) return null;
    try {
      return await socket.timeout(this.opts.ackTimeoutMs).emitWithAck(event as 'subscribe_run', payload as never);
    } catch {
      return null;
    }
  }

  /** Resolves once `done()` holds, re-checked on every event received; false after timeoutMs. */
  async until(done: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, Math.min(left, 200));
        this.waiters.add(wake);
      });
    }
    return true;
  }

  /**
   * The end of the workload: from now on what arrives counts as the final catch-up; makes sure the client is
   * connected, then subscribes every followed run it has not finished from its cursor.
   */
  async catchUp(timeoutMs: number): Promise<void> {
    this.final = true;
    await this.connect();
    await this.resuming;
    for (const id of this.log.follows.filter((runId) => !this.finished.has(runId))) await this.subscribe(id);
    await this.until(() => this.log.follows.every((id) => this.finished.has(id)), timeoutMs);
  }

  /** Closes for good (the socket log keeps closedAt null when it was still open: the history is taken before). */
  close(): void {
    this.closed = true;
    const socket = this.socket;
    this.socket = null;
    socket?.removeAllListeners();
    socket?.close();
  }
}
