/**
 * What ends a run that will not end. Every mechanism, in every process, from the gentlest:
 *
 * - The run's deadline, in its cell (workers/cell/run-dispatcher.ts): RUN_TIMEOUT_MS counted from the moment
 *   its worker starts it. The cell asks the agent to stop (ctx.signal), then terminates its worker after
 *   CANCEL_GRACE_MS. A stop the front asks for (its user, a double-text interrupt, shutdown) takes the same
 *   path. Ends the run with TIMEOUT or CANCELLED.
 * - The cell's memory watchdog (workers/cell/memory-watchdog.ts): the whole cell over CELL_MEMORY_MB exits;
 *   its runs run again in quarantine, where the culprit is named (server/runs/cell-exits.ts).
 * - The cell's scratch watch (workers/cell/scratch-watch.ts): a run whose scratch folder holds more than
 *   RUN_SCRATCH_MB or RUN_SCRATCH_FILES fails (LIMIT_EXCEEDED) and its worker is terminated; past a run's budget
 *   beside the runs' folders, the cell exits as above.
 * - Here, in the front, for a cell that does not do its part:
 *   - stop settle: a stop the cell has not settled CANCEL_GRACE_MS + SAFETY_MARGIN_MS after it was asked is
 *     settled by the front (log line 'cell did not settle a stopped run in time; settling it in the front');
 *   - wedged cell: a cell still holding that run WEDGED_CELL_MS later is killed with CellHandle.killAsWedged
 *     ('cell still holds a stopped run; killing the cell'); the other runs inside run again in quarantine;
 *   - safety deadline: a run still running RUN_TIMEOUT_MS + CANCEL_GRACE_MS + SAFETY_MARGIN_MS after it
 *     started (its cell missed its own deadline) is stopped as a timeout ('run outlived its deadline in the
 *     cell'), then the two above apply;
 *   - shutdown: runs still in flight when SHUTDOWN_GRACE_MS is over are stopped (drain.ts); those their cells
 *     have not settled within the stop wait are ended here ('the server shut down').
 * - The supervisor's silence watch (server/cells/supervisor.ts): a ready cell that sends nothing for
 *   CELL_SILENCE_TIMEOUT_MS is killed with CellHandle.killAsWedged; its runs run again in quarantine.
 *
 * Every stopped run's error text comes from protocol/stop-errors.ts.
 */
import type { CellHandle } from '../cells/cell-handle.js';
import type { Logger } from '../logger.js';
import { stopMessage, type StopReason } from '../../protocol/stop-errors.js';
import { runLogFields, type LiveRun } from './live-run.js';

/** Beyond the cell's own deadline and grace: if a cell has not settled a run by then, the front does. */
const SAFETY_MARGIN_MS = 1500;
/** A cell that still holds a run this long after the front settled it is considered wedged and killed. */
const WEDGED_CELL_MS = 10_000;
/** At shutdown, beyond the stop settle: the front's own settling has had its turn too. */
const SHUTDOWN_SLACK_MS = 500;

/** Waits (polling, shutdown only) until `runs` is empty or `ms` have passed. */
export async function untilNone(runs: () => readonly unknown[], ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (runs().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

export interface DeadlineSettings {
  runTimeoutMs: number;
  cancelGraceMs: number;
}

/** How long after each moment the front steps in, in ms (each one later than the cell's own answer). */
export function frontDeadlines(settings: DeadlineSettings) {
  const settleStop = settings.cancelGraceMs + SAFETY_MARGIN_MS;
  return {
    /** After a stop is asked: the front settles the run. */
    settleStop,
    /** After the front settled it: the cell still holding it is killed. */
    wedgedCell: WEDGED_CELL_MS,
    /** After the run started: the front stops it as a timeout. */
    safety: settings.runTimeoutMs + settleStop,
    /** At shutdown, after the stops are asked: runs still in flight end as 'the server shut down'. */
    shutdownStop: settleStop + SHUTDOWN_SLACK_MS,
  };
}

/** What the deadlines need of a cell. */
export type StoppableCell = Pick<CellHandle, 'id' | 'runs' | 'send' | 'killAsWedged'>;

export function createDeadlines(deps: {
  settings: DeadlineSettings;
  log: Pick<Logger, 'warn' | 'error'>;
  /** The cell the run was dispatched to, if it is still known. */
  cellOf: (run: LiveRun) => StoppableCell | undefined;
  /** Ends the run as stopped (finishing.ts). */
  stopped: (run: LiveRun, reason: StopReason, message: string) => void;
}) {
  const { log } = deps;
  const after = frontDeadlines(deps.settings);
  /** Each run's armed timers (cleared when it finishes or runs again). */
  const timers = new Map<string, NodeJS.Timeout[]>();
  /**
   * Wedged-cell watches: armed once the front has settled a run, so they outlive the run's own timers (the
   * cell may go on holding a finished run: that is what they watch for). Kept here so stop() clears them.
   */
  const wedgedWatches = new Set<NodeJS.Timeout>();
  let closed = false;

  function arm(run: LiveRun, ms: number, fire: () => void): void {
    if (closed) return;
    const list = timers.get(run.id) ?? [];
    list.push(setTimeout(fire, ms));
    timers.set(run.id, list);
  }

  /** Kills the cell if it still holds the run after WEDGED_CELL_MS. */
  function watchForWedge(run: LiveRun, cell: StoppableCell | undefined): void {
    if (closed) return;
    const watch = setTimeout(() => {
      wedgedWatches.delete(watch);
      if (cell && cell.runs.has(run.id)) {
        log.error({ ...runLogFields(run), cell: cell.id }, 'cell still holds a stopped run; killing the cell');
        cell.killAsWedged(run.userId);
      }
    }, after.wedgedCell);
    watch.unref();
    wedgedWatches.add(watch);
  }

  /** Ask the run's cell to stop it; if the cell does not settle it in time, the front does, then kills a wedged cell. */
  function requestStop(run: LiveRun, reason: StopReason): void {
    if (run.phase === 'finished' || run.stopReason) return;
    run.stopReason = reason;
    if (run.phase === 'queued') return deps.stopped(run, reason, stopMessage(reason, 'not_started'));
    const cell = deps.cellOf(run);
    cell?.send({ type: 'cancel', runId: run.id, reason });
    arm(run, after.settleStop, () => {
      if (run.phase === 'finished') return;
      log.warn(runLogFields(run), 'cell did not settle a stopped run in time; settling it in the front');
      deps.stopped(run, reason, stopMessage(reason, 'front'));
      watchForWedge(run, cell);
    });
  }

  return {
    requestStop,

    /** The run started in its cell: the cell owns its deadline; this only catches a cell that stopped answering. */
    started(run: LiveRun): void {
      arm(run, after.safety, () => {
        if (run.phase !== 'running' || run.stopReason) return;
        log.warn(runLogFields(run), 'run outlived its deadline in the cell');
        requestStop(run, 'timeout');
      });
    },

    /** Disarms the run's timers: it finished, or it runs again from the start. */
    clear(run: LiveRun): void {
      timers.get(run.id)?.forEach(clearTimeout);
      timers.delete(run.id);
    },

    /** Shutdown: stops every run in flight, waits for their cells, then ends the ones still in flight. */
    async stopAtShutdown(inFlight: () => LiveRun[]): Promise<void> {
      for (const run of inFlight()) requestStop(run, 'cancelled');
      await untilNone(inFlight, after.shutdownStop);
      for (const run of inFlight()) deps.stopped(run, 'cancelled', stopMessage('cancelled', 'shutdown'));
    },

    /** Shutdown is over (drain.ts) or start-up failed: every timer is cleared and none is armed again. */
    stop(): void {
      closed = true;
      for (const list of timers.values()) list.forEach(clearTimeout);
      timers.clear();
      wedgedWatches.forEach(clearTimeout);
      wedgedWatches.clear();
    },
  };
}

export type Deadlines = ReturnType<typeof createDeadlines>;
