/** The front's handle on one cell process: its state, the runs inside it, and a typed send. */
import type { ChildProcess } from 'node:child_process';
import { BURST_WORKERS_PER_WORKER, type AgentInfo, type CellStats, type FrontToCell, type ProcessMetricFamily } from '../../protocol/cell-messages.js';
import { createBatchedSender } from '../../protocol/ipc-batch.js';
import type { DescriptorKill } from './exit-cause.js';
import type { RunScratch } from './run-scratch.js';
import { UserWorkers } from './user-workers.js';

export type CellState = 'starting' | 'ready' | 'stopping' | 'dead';

/** A run that has been executing this long no longer counts against its cell's capacity (burst workers). */
export const LONG_RUN_MS = 1000;

/** A cell's id: its slot's name and generation (`cell1-g2`). */
export const cellId = (slotName: string, generation: number) => `${slotName}-g${generation}`;

export class CellHandle {
  state: CellState = 'starting';
  agents: AgentInfo[] = [];
  stats: CellStats | null = null;
  /** The cell's default process metrics as last reported; merged into the front's scrape while the cell lives. */
  processMetrics: ProcessMetricFamily[] = [];
  /** Runs assigned to this cell and not yet finished, with the time their worker started them. */
  readonly runs = new Map<string, number | null>();
  stderrTail = '';
  /** Last time a run was assigned or finished here (idle quarantine cells are retired). */
  lastBusyAt = Date.now();
  /** When a worker of this cell last ended abnormally (terminated, crashed, out of memory). */
  lastWorkerKillAt: number | null = null;
  readyAt: number | null = null;
  /** Which of this cell's workers serve which user (THREAD_REUSE=same_user): supervisor.pick sends a user's run where its worker is idle. */
  readonly userWorkers = new UserWorkers();
  /** The OS threads the cell had before its pool started (Node's own: V8's platform, libuv); null until it said so. */
  systemOsThreads: ReadonlySet<number> | null = null;
  /** The cell's RSS once warm (first report BASELINE_AFTER_MS after ready): what "grown" is measured against. */
  baselineRssBytes: number | null = null;
  /** Being replaced while idle because it grew (not a death). */
  rejuvenating = false;
  /**
   * Killed by the front because it held a run it was told to stop long after the front settled it, or because it
   * fell silent (CELL_SILENCE_TIMEOUT_MS): its death names no culprit among the runs still inside (the front
   * caused it), so they are suspects, not culprits.
   */
  killedAsWedged = false;
  /** Killed as wedged for holding a stopped run the front had settled: that run's user. */
  wedgedBy: string | null = null;
  /** Killed by the front for holding more descriptors than its ceiling (descriptor-ceiling.ts): what it held, and the ceiling. */
  killedForDescriptors: DescriptorKill | null = null;
  /** When the cell last sent anything (it reports stats every second once ready). */
  lastHeardAt = Date.now();
  readonly spawnedAt = Date.now();
  /**
   * Runs whose assignment never reached the cell (its channel was already closed, or the write failed):
   * if the cell is dead, they cannot be what killed it.
   */
  readonly undelivered = new Set<string>();
  /**
   * Set once the cell is dead: its channel was read to the end, so every run it reported started is known. A
   * worker starts agent code only once its run's start is written (workers/cell/run-dispatcher.ts), so a run
   * not reported started never ran any. False if the channel was not closed in time: the front then cannot tell.
   */
  channelDrained = false;
  private readonly outbox = createBatchedSender<FrontToCell>((batch, done) => {
    const lost = () => {
      for (const m of batch) if (m.type === 'run') this.undelivered.add(m.run.runId);
    };
    if (!this.child.connected) return lost();
    this.child.send(batch, (err) => {
      if (err) lost();
      done(err);
    });
  });

  /**
   * The cell's id: its slot's name and generation (`cell1-g2`), unique for the front's life. Logs, run rows
   * (`ran_on.cell`) and the routing of a run to the cell it was sent to name this process, never its replacement.
   */
  readonly id: string;

  constructor(
    /**
     * The slot's name (`cell1`, `quarantine1`): the `cell` label of its metrics, the same for every generation, so a
     * cell that keeps dying replaces its series rather than adding new ones.
     */
    readonly slotName: string,
    /** How many cells this slot has had, this one included. */
    readonly generation: number,
    readonly slot: number,
    readonly child: ChildProcess,
    readonly capacity: number,
    /** The quarantine cell runs suspects of a cell death alone, one at a time. */
    readonly quarantine: boolean,
    /** The scratch folders of the runs inside (server/cells/run-scratch.ts). */
    readonly scratch: RunScratch,
  ) {
    this.id = cellId(slotName, generation);
  }

  /**
   * Workers free for a new run. Runs executing longer than LONG_RUN_MS stop counting (up to
   * BURST_WORKERS_PER_WORKER times the cell's capacity), so runs that hang cannot starve short ones: Piscina
   * adds burst workers.
   */
  get freeSlots(): number {
    if (this.state !== 'ready') return 0;
    if (this.quarantine) return this.runs.size === 0 ? 1 : 0;
    const now = Date.now();
    let long = 0;
    for (const startedAt of this.runs.values()) if (startedAt !== null && now - startedAt > LONG_RUN_MS) long++;
    return Math.max(0, this.capacity + Math.min(this.capacity * BURST_WORKERS_PER_WORKER, long) - this.runs.size);
  }

  /** Sent with whatever else this turn sends to the cell, in order. */
  send(msg: FrontToCell): void {
    this.outbox.send(msg);
  }

  /**
   * The front gives up on this cell (silent, or holding a run it settled): its death will name no culprit.
   * `heldBy`: the user of the stopped run the cell still held (its user is among the death's evidence).
   */
  killAsWedged(heldBy?: string): void {
    this.killedAsWedged = true;
    if (heldBy !== undefined) this.wedgedBy = heldBy;
    this.kill('SIGKILL');
  }

  /** The cell holds more descriptors than its workers may: its death is the runs' doing (cause `descriptors`). False if it was killed so already. */
  killForDescriptors(held: number, ceiling: number): boolean {
    if (this.killedForDescriptors) return false;
    this.killedForDescriptors = { held, ceiling };
    this.kill('SIGKILL');
    return true;
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }
}
