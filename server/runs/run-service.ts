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
import { createCellKillers } from './cell-killers.js';
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
import { createSharedRuns } from './shared-runs.js';
import type { ClusterSignals } from '../cluster/signals.js';
import type { ClusterStore } from '../cluster/cluster-store.js';
import type { EventBus } from '../bus/event-bus.js';
import { NO_TRACING, type RunTracer } from '../tracing/run-tracer.js';

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
  /** Several nodes (REDIS_URL): the shared queue in the database and the signals between nodes. */
  cluster?: { store: ClusterStore; signals: ClusterSignals; bus: Pick<EventBus, 'publish'>; nodeId: string; nodeLeaseMs: number } | null;
  /** The runs' spans (server/tracing/); absent: tracing off. */
  tracer?: RunTracer;
}) {
  const { store, relay, metrics, log, settings } = deps;
  const tracer = deps.tracer ?? NO_TRACING;
  const live = createLiveRuns();
  const killers = createCellKillers(settings);
  const shared = deps.cluster
    ? createSharedRuns({
        cluster: deps.cluster.store,
        signals: deps.cluster.signals,
        bus: deps.cluster.bus,
        relay,
        live,
        scheduler: () => scheduler,
        deadlines: () => deadlines,
        cells: deps.cells,
        metrics,
        log,
        settings: { ...settings, nodeId: deps.cluster.nodeId, nodeLeaseMs: deps.cluster.nodeLeaseMs },
      })
    : null;
  const scheduler = createScheduler({
    cells: deps.cells,
    dispatch: (run, cell) => dispatch(run, cell, log, tracer),
    onStillWaiting: (run, position) => relay.append(run, 'run_queued', { position }),
    metrics,
    settings,
    killers,
    claim: shared ? (max) => shared.claim(max) : undefined,
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
    tracer,
  });
  const deadlines = createDeadlines({
    settings,
    log,
    cellOf: (run) => deps.cells.cells().find((c) => c.id === run.cellId),
    stopped: finishing.stopped,
  });
  const drain = createDrain({
    live,
    scheduler,
    deadlines,
    giveBack: shared ? (runs) => shared.releaseWaiting(runs) : undefined,
    move: shared ? (runs) => shared.move(runs) : undefined,
  });
  const intake = createIntake({
    store,
    relay,
    live,
    scheduler,
    deadlines,
    cells: deps.cells,
    accepting: deps.accepting,
    draining: () => drain.draining,
    metrics,
    shared,
    stopRun: (userId, runId) => cancel(userId, runId),
    tracer,
    userMaxStoredBytes: settings.userMaxStoredBytes,
  });

  /** Stops a run in any state, wherever it is; idempotent. Another user's run is NOT_FOUND. */
  async function cancel(userId: string, runId: string): Promise<RunRecord> {
    const record = await store.findRun(userId, runId);
    if (!record) throw new CodedError('NOT_FOUND', 'no such run');
    const wasLive = record.status === 'queued' || record.status === 'running';
    const run = live.get(runId);
    if (run && run.phase !== 'finished') {
      deadlines.requestStop(run, 'cancelled');
      // The row was read a moment ago: the run may have started since.
      return run.phase === 'running' && record.status === 'queued' ? { ...record, status: 'running' } : record;
    }
    if (!wasLive) return record;
    // Not held here (any more): through the database, which the run's holder reads. Also for a run still known here
    // as finished: one moving off a draining node is that until it is given back, and a stop that did nothing then
    // was acknowledged and lost: the run ran again elsewhere (helper-82). Flagged under the lock the give-back takes,
    // the run ends cancelled there, or, back in the queue already, here.
    if (shared) {
      if (await shared.stopElsewhere(userId, runId)) return record;
    } else if (run?.ending) {
      // Ended here, its end not written yet: that write is kept and retried for as long as the storage refuses it (a
      // full disk, the database unreachable), and a long backlog of the run's events goes first. The answer says how
      // it ended without waiting for it: awaiting `run.settled` held the stop's answer for as long as the disk was full.
      return { ...record, status: run.ending };
    }
    // Nothing was left to stop: the run ended while its row was being read. The answer says how, not the `queued`
    // or `running` of that read (helper-102: 41 stops of 79 in a fast burst said so of runs that had completed).
    return (await store.findRun(userId, runId)) ?? record;
  }
  const cellEvents = createCellEvents({ store, relay, live, finishing, deadlines, pump: scheduler.pump, metrics, log, workerQueries: deps.workerQueries, tracer });
  const cellExits = createCellExits({
    store, relay, live, scheduler, finishing, deadlines, cells: deps.cells, killers, metrics, log, settings,
    onQuarantined: deps.cluster ? (userId) => deps.cluster!.signals.cellKiller(userId) : undefined,
  });
  // Several nodes: a user another node put in quarantine for killing cells is in quarantine here too.
  deps.cluster?.signals.onCellKiller((userId) => {
    if (!killers.has(userId)) log.info({ user_id: userId }, "another node put a user in quarantine for killing cells; the user's runs here run alone in the cell killers' quarantine cell too");
    killers.named(userId);
  });

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

    /** Stops a run in any state, on this node or another; idempotent. Another user's run is NOT_FOUND. */
    cancel,

    /** A write of the run was refused: this node's lease no longer holds it (the relay's onFenced). */
    fenced(run: LiveRun): void {
      shared?.fenced(run);
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
      // Several nodes: nothing is this node's at start; the runs of dead nodes are taken over by the sweeper.
      if (shared) return Promise.resolve({ failed: 0, requeued: 0 });
      return recoverRuns({ store, relay, live, scheduler, finishing });
    },

    /** Several nodes: registers this node's lease, starts the sweeper and claiming (after the bus is up). */
    async join(): Promise<void> {
      await shared?.start();
    },

    /** Starts the scheduler's periodic pump (drain stops it). */
    open(): void {
      scheduler.start();
    },

    /** Dispatches whatever the cells can take now. */
    pump: scheduler.pump,

    /** SIGTERM: see drain.ts; several nodes: then the lease ends (what is left goes back to the shared queue). */
    async drain(graceMs: number): Promise<void> {
      await drain.drain(graceMs);
      await shared?.stop(true);
    },

    /** Stops every timer (the scheduler's pump, the deadlines): after drain, or when start-up fails after open(). */
    close(): void {
      scheduler.stop();
      deadlines.stop();
      void shared?.stop(false);
    },
  };
}

export type RunService = ReturnType<typeof createRunService>;
