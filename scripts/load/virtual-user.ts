/**
 * One simulated chat user: its own token and socket, the runs it started, and every event it received.
 * It only records what it sees; judging (latency, isolation, containment) happens after the load.
 */
import { performance } from 'node:perf_hooks';
import { io, type Socket } from 'socket.io-client';
import { messageOf } from '../../protocol/errors.js';

export interface ReceivedEvent {
  seq: number;
  event_id: string;
  type: string;
  user_id: string;
  run_id: string;
  /** Set when the server merged partial_result events coalesced_from_seq..seq for this (lagging) socket. */
  coalesced_from_seq?: number;
}

export interface RunObservation {
  phase: string;
  user: string;
  index: number;
  kind: 'healthy' | 'chaos';
  mode: string | null;
  /** What echo must answer, when the healthy agent is echo; null otherwise. */
  expectedResponse: string | null;
  sentAt: number;
  ackMs: number | null;
  state: 'pending' | 'accepted' | 'refused' | 'ack_error';
  refusedCode: string | null;
  ackError: string | null;
  runId: string | null;
  /** Received events of this run, in arrival order. */
  events: ReceivedEvent[];
  firstEventMs: number | null;
  startedMs: number | null;
  terminalMs: number | null;
  status: string | null;
  code: string | null;
  finalResponse: unknown;
}

interface TerminalPayload {
  status?: string;
  error?: { code?: string };
  final_response?: unknown;
}

interface Arrival {
  e: ReceivedEvent;
  at: number;
  payload?: TerminalPayload;
}

export function newObservation(plan: Pick<RunObservation, 'phase' | 'user' | 'index' | 'kind' | 'mode' | 'expectedResponse'>): RunObservation {
  return {
    ...plan, sentAt: 0, ackMs: null, state: 'pending', refusedCode: null, ackError: null, runId: null, events: [],
    firstEventMs: null, startedMs: null, terminalMs: null, status: null, code: null, finalResponse: undefined,
  };
}

/** Live counters the progress line reads; the users write them. */
export interface Counters {
  sent: number;
  accepted: number;
  refused: number;
  ackErrors: number;
  finished: number;
  completed: number;
  events: number;
}

export const newCounters = (): Counters => ({ sent: 0, accepted: 0, refused: 0, ackErrors: 0, finished: 0, completed: 0, events: 0 });

const RESYNC_TIMEOUT_MS = 30_000;

export class VirtualUser {
  readonly runs = new Map<string, RunObservation>();
  /** Events that carried another user's id: the isolation fault this tool exists to catch. */
  readonly foreignEvents: ReceivedEvent[] = [];
  /** Events of this user for runs it never learned the id of (a lost acknowledgement), by run id. */
  readonly unattributed = new Map<string, Arrival[]>();
  disconnected = false;
  serverShutdown = false;
  /** Times the server paused a run's live events for this socket (`resync_required`) and it replayed them. */
  resyncs = 0;
  private readonly waiters = new Map<string, () => void>();

  private constructor(
    readonly userId: string,
    readonly token: string,
    private readonly socket: Socket,
    private counters: Counters,
  ) {
    socket.onAny((name: string, envelope: unknown) => this.receive(name, envelope));
    socket.on('disconnect', () => {
      this.disconnected = true;
      // Nobody will deliver the rest: stop waiting now rather than at each run's timeout.
      for (const wake of this.waiters.values()) wake();
      this.waiters.clear();
    });
  }

  static async connect(url: string, userId: string, token: string, counters: Counters, timeoutMs: number): Promise<VirtualUser> {
    const socket = io(url, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true, timeout: timeoutMs });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', (err) => {
        socket.close();
        reject(new Error(`socket connection for ${userId} failed: ${err.message}`));
      });
    });
    return new VirtualUser(userId, token, socket, counters);
  }

  /** Each phase counts on its own. */
  useCounters(counters: Counters): void {
    this.counters = counters;
  }

  /** Sends start_agent and records the acknowledgement (accepted, refused or lost). */
  async start(obs: RunObservation, agent: string, input: Record<string, unknown>, ackTimeoutMs: number): Promise<void> {
    obs.sentAt = performance.now();
    this.counters.sent++;
    let ack: { run_id?: string; error?: { code: string; message: string } };
    try {
      ack = await this.socket.timeout(ackTimeoutMs).emitWithAck('start_agent', { agent, input });
    } catch (err) {
      obs.state = 'ack_error';
      obs.ackError = this.disconnected ? 'disconnected' : messageOf(err);
      this.counters.ackErrors++;
      return;
    }
    obs.ackMs = performance.now() - obs.sentAt;
    if (ack?.error || typeof ack?.run_id !== 'string') {
      obs.state = 'refused';
      obs.refusedCode = ack?.error?.code ?? 'MALFORMED_ACK';
      this.counters.refused++;
      return;
    }
    obs.state = 'accepted';
    obs.runId = ack.run_id;
    this.runs.set(ack.run_id, obs);
    this.counters.accepted++;
    // Events that arrived before the acknowledgement are this run's: attach them in arrival order.
    for (const a of this.unattributed.get(ack.run_id) ?? []) this.attach(obs, a);
    this.unattributed.delete(ack.run_id);
  }

  /** Resolves when the run's terminal event arrived, the socket closed, or the time is up. */
  waitTerminal(obs: RunObservation, timeoutMs: number): Promise<void> {
    if (obs.state !== 'accepted' || obs.terminalMs !== null || this.disconnected) return Promise.resolve();
    const runId = obs.runId!;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.waiters.set(runId, () => {
        this.waiters.delete(runId);
        done();
      });
    });
  }

  close(): void {
    for (const wake of this.waiters.values()) wake();
    this.socket.close();
  }

  private receive(name: string, envelope: unknown): void {
    if (name === 'server_shutdown') this.serverShutdown = true;
    if (name === 'resync_required') return this.resync(envelope as { run_id?: unknown; last_seq?: unknown });
    if (!envelope || typeof envelope !== 'object' || !('seq' in envelope) || !('run_id' in envelope)) return;
    const env = envelope as ReceivedEvent & { payload?: TerminalPayload };
    const e: ReceivedEvent = { seq: env.seq, event_id: env.event_id, type: env.type, user_id: env.user_id, run_id: env.run_id };
    if (typeof env.coalesced_from_seq === 'number') e.coalesced_from_seq = env.coalesced_from_seq;
    // Only the terminal payload is kept: a flood of partial results must not pin memory.
    const arrival: Arrival = { e, at: performance.now(), payload: e.type === 'agent_completed' ? env.payload : undefined };
    this.counters.events++;
    if (e.user_id !== this.userId) this.foreignEvents.push(e);
    const obs = this.runs.get(e.run_id);
    if (!obs) {
      const list = this.unattributed.get(e.run_id) ?? [];
      list.push(arrival);
      this.unattributed.set(e.run_id, list);
      return;
    }
    this.attach(obs, arrival);
  }

  /**
   * A socket too slow for a run's live events is told to replay them from the log, as a real client must:
   * subscribe_run from the last seq it had; the server then resumes it live with no gap and no duplicate.
   */
  private resync(msg: { run_id?: unknown; last_seq?: unknown }): void {
    if (typeof msg?.run_id !== 'string' || typeof msg.last_seq !== 'number') return;
    this.resyncs++;
    this.socket
      .timeout(RESYNC_TIMEOUT_MS)
      .emitWithAck('subscribe_run', { run_id: msg.run_id, after_seq: msg.last_seq })
      .catch(() => undefined); // a lost replay shows up as missing events in the report
  }

  private attach(obs: RunObservation, { e, at, payload }: Arrival): void {
    obs.events.push(e);
    const ms = at - obs.sentAt;
    obs.firstEventMs ??= ms;
    if (e.type === 'agent_started') obs.startedMs ??= ms;
    if (e.type === 'agent_completed' && obs.terminalMs === null) {
      obs.terminalMs = ms;
      obs.status = payload?.status ?? null;
      obs.code = payload?.error?.code ?? null;
      obs.finalResponse = payload?.final_response;
      this.counters.finished++;
      if (obs.status === 'completed') this.counters.completed++;
      this.waiters.get(e.run_id)?.();
    }
  }
}
