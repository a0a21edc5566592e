/**
 * The run lifecycle in the front: admission (persist, then acknowledge), the FIFO of accepted runs waiting
 * for a worker thread, dispatch to cells, stop and timeout safety nets, and exactly one terminal event per
 * run whatever happens to its thread, its cell or this process.
 */
import { randomUUID } from 'node:crypto';
import type { CellHandle } from '../cells/cell-handle.js';
import type { CellExit } from '../cells/exit-cause.js';
import type { CellSupervisor } from '../cells/supervisor.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { AgentInput, CellToFront, RunOutcome } from '../protocol/cell-messages.js';
import { CodedError, type ErrorBody } from '../protocol/errors.js';
import type { JsonValue, TerminalStatus } from '../protocol/events.js';
import type { RunRecord, RunStore } from '../store/run-store.js';
import type { EventRelay } from './event-relay.js';
import { assignment, newLiveRun, type LiveRun } from './live-run.js';

export interface RunServiceConfig {
  maxQueuedRuns: number;
  runTimeoutMs: number;
  cancelGraceMs: number;
}

export interface StartRunRequest {
  agent: string;
  input: AgentInput;
  threadId: string | null;
  correlationId: string | null;
}

/** Beyond the cell's own deadline and grace: if a cell has not settled a run by then, the front does. */
const SAFETY_MARGIN_MS = 1500;
/** A cell that still holds a run this long after the front settled it is considered wedged and killed. */
const WEDGED_CELL_MS = 10_000;

export function createRunService(deps: {
  store: RunStore;
  relay: EventRelay;
  cells: () => CellSupervisor;
  metrics: Metrics;
  log: Logger;
  config: RunServiceConfig;
}) {
  const { store, relay, metrics, log, config } = deps;
  const live = new Map<string, LiveRun>();
  /** Accepted runs waiting for a thread, in acceptance order (a Map keeps insertion order). */
  const queue = new Map<string, LiveRun>();
  let draining = false;

  function pump(): void {
    for (const run of queue.values()) {
      const cell = deps.cells().pick();
      if (!cell) return;
      queue.delete(run.id);
      run.phase = 'dispatched';
      run.cellId = cell.id;
      run.attempt++;
      cell.runs.add(run.id);
      cell.send({ type: 'run', run: assignment(run) });
    }
  }

  function finish(run: LiveRun, status: TerminalStatus, error: ErrorBody | null, result: JsonValue | null, executionTimeMs: number): void {
    if (run.phase === 'finished') return; // exactly one terminal event
    run.phase = 'finished';
    queue.delete(run.id);
    run.timers.forEach(clearTimeout);
    metrics.runsFinished.inc({ status, code: error?.code ?? 'none' });
    if (run.startedAt !== null) metrics.runDuration.observe(executionTimeMs / 1000);
    log.info(
      { run_id: run.id, user_id: run.userId, thread_id: run.threadId, cell: run.cellId, agent: run.agentName, status, code: error?.code, execution_time_ms: executionTimeMs, attempt: run.attempt },
      'run finished',
    );
    void relay.finish(run, status, error, result, executionTimeMs).then(() => {
      live.delete(run.id);
      run.markSettled();
    });
  }

  function finishFromOutcome(run: LiveRun, outcome: RunOutcome): void {
    if (outcome.status === 'completed') finish(run, 'completed', null, outcome.result, outcome.executionTimeMs);
    else finish(run, outcome.status, outcome.error, null, outcome.executionTimeMs);
  }

  function stoppedBy(run: LiveRun, reason: 'cancelled' | 'timeout', message: string): void {
    const elapsed = run.startedAt === null ? 0 : Date.now() - run.startedAt;
    finish(run, reason, { code: reason === 'timeout' ? 'TIMEOUT' : 'CANCELLED', message }, null, elapsed);
  }

  function cellOf(run: LiveRun): CellHandle | undefined {
    return deps.cells().cells().find((c) => c.id === run.cellId);
  }

  /** Ask the run's cell to stop it; if the cell does not settle it in time, the front does, then kills a wedged cell. */
  function requestStop(run: LiveRun, reason: 'cancelled' | 'timeout'): void {
    if (run.phase === 'finished' || run.stopReason) return;
    run.stopReason = reason;
    if (run.phase === 'queued') return stoppedBy(run, reason, 'the run was stopped before it started');
    const cell = cellOf(run);
    cell?.send({ type: 'cancel', runId: run.id, reason });
    run.timers.push(
      setTimeout(() => {
        if (run.phase === 'finished') return;
        log.warn({ run_id: run.id, cell: run.cellId }, 'cell did not settle a stopped run in time; settling it in the front');
        stoppedBy(run, reason, 'the run was stopped');
        const wedged = setTimeout(() => {
          if (cell && cell.runs.has(run.id)) {
            log.error({ cell: cell.id, run_id: run.id }, 'cell still holds a stopped run; killing the cell');
            cell.kill('SIGKILL');
          }
        }, WEDGED_CELL_MS);
        wedged.unref();
      }, config.cancelGraceMs + SAFETY_MARGIN_MS),
    );
  }

  return {
    get draining() {
      return draining;
    },

    snapshot() {
      let active = 0;
      for (const r of live.values()) if (r.phase === 'dispatched' || r.phase === 'running') active++;
      return { activeRuns: active, queuedRuns: queue.size };
    },

    /** Persists the request, then returns it; the caller acknowledges before any event is sent. */
    async start(userId: string, req: StartRunRequest): Promise<RunRecord> {
      if (draining) throw new CodedError('SHUTTING_DOWN', 'the server is shutting down; retry shortly', { retryAfterSeconds: 5 });
      if (!deps.cells().agents().some((a) => a.name === req.agent)) {
        throw new CodedError('BAD_REQUEST', `unknown agent ${JSON.stringify(req.agent)}; GET /v1/agents lists the agents`);
      }
      const free = deps.cells().cells().reduce((n, c) => n + c.freeSlots, 0);
      if (queue.size >= config.maxQueuedRuns + free) {
        metrics.runsRefused.inc({ code: 'OVERLOADED' });
        throw new CodedError('OVERLOADED', `the run queue is full (MAX_QUEUED_RUNS=${config.maxQueuedRuns}); nothing was accepted`, { retryAfterSeconds: 2 });
      }
      if (req.threadId && !(await store.findThread(userId, req.threadId))) throw new CodedError('NOT_FOUND', 'no such thread');

      const now = Date.now();
      const run = newLiveRun({
        id: randomUUID(),
        userId,
        threadId: req.threadId ?? randomUUID(),
        agentName: req.agent,
        input: req.input,
        requestId: req.correlationId ?? randomUUID(),
        correlationId: req.correlationId,
        acceptedAt: now,
        nextSeq: 1,
      });
      const first = relay.envelope(run, 'message_received', { correlation_id: req.correlationId }, now);
      const record = await store.acceptRun({
        id: run.id,
        userId,
        threadId: req.threadId,
        newThreadId: run.threadId,
        agentName: run.agentName,
        input: run.input,
        correlationId: run.correlationId,
        requestId: run.requestId,
        firstEvent: first,
      });
      metrics.runsAccepted.inc();
      live.set(run.id, run);
      queue.set(run.id, run);
      // After the caller's acknowledgement: the client learns the run id before its first event.
      setImmediate(() => {
        relay.deliver(run, first);
        pump();
      });
      return record;
    },

    /** Stops a run in any state; idempotent. Another user's run is NOT_FOUND. */
    async cancel(userId: string, runId: string): Promise<RunRecord> {
      const record = await store.findRun(userId, runId);
      if (!record) throw new CodedError('NOT_FOUND', 'no such run');
      const run = live.get(runId);
      if (run && run.phase !== 'finished') requestStop(run, 'cancelled');
      return record;
    },

    /** Resolves when the run's terminal event is persisted and delivered (immediately if it is not live). */
    settled(runId: string): Promise<void> {
      return live.get(runId)?.settled ?? Promise.resolve();
    },

    onCellReady(cell: CellHandle, restartMs: number | null): void {
      if (restartMs !== null) metrics.cellRestartSeconds.observe(restartMs / 1000);
      log.debug({ cell: cell.id }, 'cell ready for runs');
      pump();
    },

    onCellMessage(cell: CellHandle, msg: CellToFront): void {
      if (msg.type === 'stats') {
        cell.stats = msg.stats;
        return;
      }
      if (msg.type !== 'run_started' && msg.type !== 'run_event' && msg.type !== 'run_finished') return;
      if (msg.type === 'run_finished') {
        cell.runs.delete(msg.runId);
        setImmediate(pump);
      }
      const run = live.get(msg.runId);
      // Messages for a run this cell no longer owns (settled by the front after a stop) are dropped.
      if (!run || run.cellId !== cell.id || run.phase === 'finished') return;
      switch (msg.type) {
        case 'run_started': {
          run.phase = 'running';
          run.startedAt = msg.startedAt;
          metrics.runsStarted.inc();
          metrics.queueWait.observe(Math.max(0, msg.startedAt - run.acceptedAt) / 1000);
          const { startedAt, attempt } = run;
          relay.then(run, () => store.markRunning(run.id, cell.id, msg.workerId, new Date(startedAt), attempt));
          relay.append(run, 'agent_started', { status: 'running', message: `agent ${run.agentName} started` }, msg.startedAt);
          // The cell owns the deadline; this only catches a cell that stopped answering.
          run.timers.push(
            setTimeout(() => {
              if (run.phase !== 'running' || run.stopReason) return;
              log.warn({ run_id: run.id, cell: cell.id }, 'run outlived its deadline in the cell');
              requestStop(run, 'timeout');
            }, config.runTimeoutMs + config.cancelGraceMs + SAFETY_MARGIN_MS),
          );
          return;
        }
        case 'run_event':
          relay.append(run, msg.event.type, msg.event.payload as never, msg.event.timestamp);
          return;
        case 'run_finished':
          finishFromOutcome(run, msg.outcome);
          return;
      }
    },

    onCellExit(cell: CellHandle, exit: CellExit, runIds: string[]): void {
      metrics.cellDeaths.inc({ cause: exit.cause });
      for (const id of runIds) {
        const run = live.get(id);
        if (!run || run.phase === 'finished' || run.cellId !== cell.id) continue;
        if (run.stopReason) stoppedBy(run, run.stopReason, `the run was stopped (its cell ended: ${exit.error.message})`);
        else finish(run, 'failed', exit.error, null, run.startedAt === null ? 0 : Date.now() - run.startedAt);
      }
      pump();
    },

    /** At start-up: finish runs a dead process left running; queue again the ones it had accepted. */
    async recover(): Promise<{ failed: number; requeued: number }> {
      let failed = 0;
      let requeued = 0;
      for (const { run: r, lastSeq } of await store.findUnfinishedRuns()) {
        const run = newLiveRun({
          id: r.id,
          userId: r.userId,
          threadId: r.threadId,
          agentName: r.agentName,
          input: r.input,
          requestId: r.requestId,
          correlationId: r.correlationId,
          acceptedAt: r.queuedAt.getTime(),
          nextSeq: lastSeq + 1,
          attempt: r.attempts,
        });
        live.set(run.id, run);
        if (r.status === 'running') {
          run.phase = 'running';
          run.startedAt = r.startedAt?.getTime() ?? null;
          finish(run, 'failed', { code: 'WORKER_CRASHED', message: 'the server stopped while this run was running' }, null, 0);
          failed++;
        } else {
          queue.set(run.id, run);
          requeued++;
        }
      }
      return { failed, requeued };
    },

    /** Dispatches whatever the cells can take now. */
    pump,

    /**
     * SIGTERM: refuse new runs, let running ones finish within the grace period, stop the rest as
     * cancelled with their terminal events. Queued runs stay queued in the database and resume at the
     * next start: nothing accepted is lost.
     */
    async drain(graceMs: number): Promise<void> {
      draining = true;
      for (const run of queue.values()) run.markSettled();
      queue.clear();
      const inFlight = () => [...live.values()].filter((r) => r.phase === 'dispatched' || r.phase === 'running');
      const deadline = Date.now() + graceMs;
      while (inFlight().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      for (const run of inFlight()) requestStop(run, 'cancelled');
      const stopDeadline = Date.now() + config.cancelGraceMs + SAFETY_MARGIN_MS + 500;
      while (inFlight().length > 0 && Date.now() < stopDeadline) await new Promise((r) => setTimeout(r, 50));
      for (const run of inFlight()) stoppedBy(run, 'cancelled', 'the server shut down');
      await Promise.all([...live.values()].filter((r) => r.phase === 'finished').map((r) => r.settled));
    },
  };
}

export type RunService = ReturnType<typeof createRunService>;
