/**
 * What cells report, applied in the front: a run started (its status written, its safety deadline armed),
 * its events (numbered and relayed), its end (finished); and the cell's telemetry (stats, retired workers,
 * memory warnings) and its workers' database statements (to the gate). Messages about a run the cell no
 * longer owns (settled by the front after a stop) are dropped.
 */
import type { CellHandle } from '../cells/cell-handle.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { CellToFront } from '../../protocol/cell-messages.js';
import type { RunStore } from '../store/store.js';
import type { WorkerQueryGate } from '../store/worker-query-gate.js';
import type { Deadlines } from './deadlines.js';
import type { EventRelay } from './event-relay.js';
import type { Finishing } from './finishing.js';
import type { LiveRuns } from './live-runs.js';
import type { RunTracer } from '../tracing/run-tracer.js';

/** At most this much of a stopped run's streamed answer is kept as its interrupted message. */
const PARTIAL_TEXT_CAP = 256 * 1024;

export function createCellEvents(deps: {
  store: RunStore;
  relay: EventRelay;
  live: LiveRuns;
  finishing: Finishing;
  deadlines: Deadlines;
  /** Dispatches whatever the cells can take now (scheduler.ts). */
  pump: () => void;
  metrics: Metrics;
  log: Logger;
  /** Where workers' database statements go (absent: every one is refused). */
  workerQueries?: WorkerQueryGate;
  tracer: RunTracer;
}) {
  const { store, relay, live, metrics, log } = deps;

  return {
    onCellReady(cell: CellHandle, restartMs: number | null): void {
      if (restartMs !== null) metrics.cellRestartSeconds.observe(restartMs / 1000);
      log.debug({ cell: cell.id }, 'cell ready for runs');
      deps.pump();
    },

    onCellMessage(cell: CellHandle, msg: CellToFront): void {
      if (msg.type === 'stats') {
        cell.stats = msg.stats;
        return;
      }
      if (msg.type === 'worker_retired') {
        metrics.workerRecycles.inc({ reason: msg.reason });
        return;
      }
      if (msg.type === 'worker_gone') {
        cell.userWorkers.gone(msg.workerId);
        return;
      }
      if (msg.type === 'db_query') {
        if (deps.workerQueries) deps.workerQueries.handle(cell, msg, (runId) => live.get(runId));
        else cell.send({ type: 'db_answer', runId: msg.runId, queryId: msg.queryId, ok: false, error: { code: 'DB_QUERY_REFUSED', message: 'this server executes no database statement for worker threads' } });
        return;
      }
      if (msg.type === 'memory_exceeded') {
        log.warn({ cell: cell.id, rss_bytes: msg.rssBytes, limit_bytes: msg.limitBytes }, 'cell over CELL_MEMORY_MB');
        return;
      }
      if (msg.type === 'model_call') {
        const run = live.get(msg.runId);
        if (run && run.cellId === cell.id) deps.tracer.modelCall(run, msg.call);
        return;
      }
      if (msg.type !== 'run_started' && msg.type !== 'run_event' && msg.type !== 'run_finished') return;
      if (msg.type === 'run_finished') {
        cell.runs.delete(msg.runId);
        cell.userWorkers.finished(msg.runId, msg.report !== null && msg.report.recycled === null);
        cell.scratch.close(msg.runId);
        cell.lastBusyAt = Date.now();
        // No report: the worker did not end normally (terminated, crashed, out of memory). A cell that dies
        // soon after is more likely dying of that worker than of the runs still inside it.
        if (!msg.report) cell.lastWorkerKillAt = Date.now();
        setImmediate(deps.pump);
        if (!msg.report && msg.outcome.status !== 'completed' && ['WORKER_CRASHED', 'OUT_OF_MEMORY'].includes(msg.outcome.error.code)) {
          metrics.workerDeaths.inc({ cause: msg.outcome.error.code === 'OUT_OF_MEMORY' ? 'out_of_memory' : 'exited' });
        }
      }
      const run = live.get(msg.runId);
      // Messages for a run this cell no longer owns (settled by the front after a stop) are dropped.
      if (!run || run.cellId !== cell.id || run.phase === 'finished') {
        if (msg.type === 'run_event') metrics.eventsDropped.inc({ reason: 'run_settled' });
        return;
      }
      switch (msg.type) {
        case 'run_started': {
          run.phase = 'running';
          run.startedAt = msg.startedAt;
          run.workerId = msg.workerId;
          cell.runs.set(run.id, msg.startedAt);
          cell.userWorkers.started(run.id, msg.workerId);
          deps.tracer.started(run, msg.startedAt);
          metrics.runsStarted.inc();
          metrics.queueWait.observe(Math.max(0, msg.startedAt - run.acceptedAt) / 1000);
          const { startedAt, attempt } = run;
          relay.queueWrite(run, () => store.markRunning(run.id, cell.id, msg.workerId, new Date(startedAt), attempt, run.owner));
          relay.append(run, 'agent_started', { status: 'running', message: `agent ${run.agentName} started` }, msg.startedAt);
          deps.deadlines.started(run);
          return;
        }
        case 'run_event':
          if (run.firstEventAt === null) {
            run.firstEventAt = Date.now();
            metrics.timeToFirstEvent.observe((run.firstEventAt - run.acceptedAt) / 1000);
          }
          if (msg.event.type === 'partial_result' && run.partialText.length < PARTIAL_TEXT_CAP) {
            run.partialText = (run.partialText + String(msg.event.payload.text)).slice(0, PARTIAL_TEXT_CAP);
          }
          relay.append(run, msg.event.type, msg.event.payload as never, msg.event.timestamp);
          deps.tracer.event(run, msg.event);
          return;
        case 'run_finished':
          deps.finishing.fromOutcome(run, msg.outcome, msg.report);
          return;
      }
    },
  };
}

export type CellEvents = ReturnType<typeof createCellEvents>;
