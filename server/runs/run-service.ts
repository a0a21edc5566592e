/**
 * The run lifecycle in the front, composed from one file per concern:
 *
 * - intake.ts: accept a run (refusals, idempotency, double-texting), persist it, then acknowledge;
 * - scheduler.ts: the fair queue (fair-queue.ts), quarantine, per-user and per-conversation occupancy
 *   (occupancy.ts), and the pump that sends runs to cells (dispatch.ts);
 * - cell-events.ts: what cells report about runs, and their telemetry;
 * - cell-exits.ts: a cell's death, judged by cell-death.ts;
 * - deadlines.ts: stops, and everything that ends a run that will not end;
 * - finishing.ts: exactly one terminal event per run, its isolation report and its log line;
 * - recovery.ts and drain.ts: start-up and shutdown.
 *
 * The run's event log (seq, order of writes) is the relay's (event-relay.ts).
 */
import type { CellSupervisor } from '../cells/supervisor.js';
import type { RunServiceSettings } from '../config-views.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { CodedError } from '../../protocol/errors.js';
import type { Accepting } from '../shared/shared-state.js';
import type { RunRecord, RunStore } from '../store/store.js';
import type { WorkerQueryGate } from '../store/worker-query-gate.js';
import { createCellEvents } from './cell-events.js';
import { createCellExits } from './cell-exits.js';
import { createDeadlines } from './deadlines.js';
import { dispatch } from './dispatch.js';
import { createDrain } from './drain.js';
import type { EventRelay } from './event-relay.js';
import { createFinishing } from './finishing.js';
import { createIntake, type StartedRun, type StartRunRequest } from './intake.js';
import type { LiveRun } from './live-run.js';
import { createLiveRuns } from './live-runs.js';
import { recoverRuns } from './recovery.js';
import { createScheduler } from './scheduler.js';

export type { StartRunRequest } from './intake.js';

export function createRunService(deps: {
  store: RunStore;
  relay: EventRelay;
  cells: CellSupervisor;
  metrics: Metrics;
  log: Logger;
  /** Picked from the one Config (server/config-views.ts). */
  settings: RunServiceSettings;
  /** Requests being accepted right now, by idempotency key (server/shared/). */
  accepting: Accepting;
  /** Where worker threads' database statements go (absent: every one is refused). */
  workerQueries?: WorkerQueryGate;
}) {
  const { store, relay, metrics, log, settings } = deps;
  const live = createLiveRuns();
  const scheduler = createScheduler({
    cells: deps.cells,
    dispatch: (run, cell) => dispatch(run, cell, log),
    onStillWaiting: (run, position) => relay.append(run, 'run_queued', { position }),
    metrics,
    settings,
  });
  // Finishing and the deadlines refer to each other: a deadline ends a run; an ended run's deadlines are disarmed.
  const finishing = createFinishing({
    relay,
    live,
    metrics,
    log,
    release: (run) => {
      scheduler.release(run);
      deadlines.clear(run);
    },
  });
  const deadlines = createDeadlines({
    settings,
    log,
    cellOf: (run) => deps.cells.cells().find((c) => c.id === run.cellId),
    stopped: finishing.stopped,
  });
  const drain = createDrain({ live, scheduler, deadlines });
  const intake = createIntake({ store, relay, live, scheduler, deadlines, cells: deps.cells, accepting: deps.accepting, draining: () => drain.draining, metrics });
  const cellEvents = createCellEvents({ store, relay, live, finishing, deadlines, pump: scheduler.pump, metrics, log, workerQueries: deps.workerQueries });
  const cellExits = createCellExits({ store, relay, live, scheduler, finishing, deadlines, cells: deps.cells, metrics, settings });

  return {
    get draining() {
      return drain.draining;
    },

    /** Runs waiting or in flight, for per-user maxima (server/runs/user-stats.ts). */
    liveRuns(): LiveRun[] {
      return [...scheduler.waitingRuns(), ...live.inFlight()];
    },

    snapshot() {
      return { activeRuns: live.inFlight().length, queuedRuns: scheduler.waiting, isolation: finishing.tally() };
    },

    /**
     * Persists the request, then returns it; the caller acknowledges before any event is sent. With a
     * correlation id, the same id within 24 h returns the first run (`deduplicated`) instead of a new one.
     */
    start(userId: string, req: StartRunRequest): Promise<StartedRun> {
      return intake.start(userId, req);
    },

    /** Stops a run in any state; idempotent. Another user's run is NOT_FOUND. */
    async cancel(userId: string, runId: string): Promise<RunRecord> {
      const record = await store.findRun(userId, runId);
      if (!record) throw new CodedError('NOT_FOUND', 'no such run');
      const run = live.get(runId);
      if (run && run.phase !== 'finished') deadlines.requestStop(run, 'cancelled');
      return record;
    },

    /** Resolves when the run's terminal event is persisted and delivered (immediately if it is not live). */
    settled(runId: string): Promise<void> {
      return live.get(runId)?.settled ?? Promise.resolve();
    },

    onCellReady: cellEvents.onCellReady,
    onCellMessage: cellEvents.onCellMessage,
    onCellExit: cellExits.onCellExit,

    /** At start-up: finish runs a dead process left running; queue again the ones it had accepted. */
    recover(): Promise<{ failed: number; requeued: number }> {
      return recoverRuns({ store, relay, live, scheduler, finishing });
    },

    /** Starts the scheduler's periodic pump (drain stops it). */
    open(): void {
      scheduler.start();
    },

    /** Dispatches whatever the cells can take now. */
    pump: scheduler.pump,

    /** SIGTERM: see drain.ts. */
    drain: drain.drain,

    /** Stops every timer (the scheduler's pump, the deadlines): after drain, or when start-up fails after open(). */
    close(): void {
      scheduler.stop();
      deadlines.stop();
    },
  };
}

export type RunService = ReturnType<typeof createRunService>;
