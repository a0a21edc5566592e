/**
 * One socket of a user on one node that notes when each run event reached it: the wall-clock time (to compare with
 * the envelope's `timestamp`, written by the node that numbered it) and the monotonic time (to compare two
 * sockets of this process). It can start runs and waits for their terminal event.
 */
import { performance } from 'node:perf_hooks';
import { io, type Socket } from 'socket.io-client';

export interface Arrival {
  type: string;
  seq: number;
  /** The envelope's timestamp, ms since the epoch. */
  stampedAt: number;
  /** Date.now() on arrival. */
  wallAt: number;
  /** performance.now() on arrival. */
  monoAt: number;
}

const ACK_TIMEOUT_MS = 15_000;

export class EventRecorder {
  /** Arrivals by run id, in arrival order. */
  readonly runs = new Map<string, Arrival[]>();
  /** Times the server asked this socket to replay a run (it was too slow): its live events then have a hole. */
  resyncs = 0;
  private readonly terminalWaiters = new Map<string, () => void>();

  private constructor(
    readonly url: string,
    private readonly socket: Socket,
  ) {
    socket.onAny((name: string, e: unknown) => {
      if (name === 'resync_required') this.resyncs++;
      const env = e as { type?: unknown; seq?: unknown; run_id?: unknown; timestamp?: unknown } | null;
      if (!env || typeof env.run_id !== 'string' || typeof env.seq !== 'number' || typeof env.type !== 'string') return;
      const arrival: Arrival = { type: env.type, seq: env.seq, stampedAt: Date.parse(String(env.timestamp)), wallAt: Date.now(), monoAt: performance.now() };
      const list = this.runs.get(env.run_id) ?? [];
      list.push(arrival);
      this.runs.set(env.run_id, list);
      if (env.type === 'agent_completed') this.terminalWaiters.get(env.run_id)?.();
    });
  }

  static async connect(url: string, token: string): Promise<EventRecorder> {
    const socket = io(url, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true, timeout: ACK_TIMEOUT_MS });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', (err) => {
        socket.close();
        reject(new Error(`socket connection to ${url} failed: ${err.message}`));
      });
    });
    return new EventRecorder(url, socket);
  }

  /** Starts a run through this socket's node; its run id. */
  async start(agent: string, input: Record<string, unknown>): Promise<string> {
    const ack = await this.socket.timeout(ACK_TIMEOUT_MS).emitWithAck('start_agent', { agent, input });
    if (typeof ack?.run_id !== 'string') throw new Error(`start_agent refused: ${JSON.stringify(ack?.error ?? ack)}`);
    return ack.run_id;
  }

  /** Resolves once the run's terminal event arrived here, or after timeoutMs (false). */
  waitTerminal(runId: string, timeoutMs: number): Promise<boolean> {
    if (this.runs.get(runId)?.some((a) => a.type === 'agent_completed')) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.terminalWaiters.delete(runId);
        resolve(false);
      }, timeoutMs);
      this.terminalWaiters.set(runId, () => {
        clearTimeout(timer);
        this.terminalWaiters.delete(runId);
        resolve(true);
      });
    });
  }

  close(): void {
    this.socket.close();
  }
}
