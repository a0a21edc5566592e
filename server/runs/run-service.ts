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
import type { AgentInput, CellToFront, RunOutcome, RunReport } from '../../protocol/cell-messages.js';
import { CodedError, type ErrorBody } from '../../protocol/errors.js';
import type { JsonValue, TerminalStatus } from '../../protocol/events.js';
import type { IsolationReport, RunRecord, RunStore } from '../store/store.js';
import type { ThreadQueryGate } from '../store/thread-query-gate.js';
import type { EventRelay } from './event-relay.js';
import { createAdmission } from './admission.js';
import { judgeCellDeath } from './cell-death.js';
import { assignment, newLiveRun, runLogFields, type LiveRun } from './live-run.js';

export interface RunServiceConfig {
  maxQueuedRuns: number;
  userMaxConcurrentRuns: number;
  userMaxQueuedRuns: number;
  maxRunAttempts: number;
  runTimeoutMs: number;
  cancelGraceMs: number;
}

export interface StartRunRequest {
  agent: string;
  input: AgentInput;
  threadId: string | null;
  correlationId: string | null;
  /** Double-texting policy when the thread already has a run: wait behind it, refuse, or stop it. */
  multitask: 'enqueue' | 'reject' | 'interrupt';
  /** Set by POST /v1/runs/:id/replay: the run this one replays (same user, agent, input and thread). */
  replayOf?: string | null;
}

const IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000;
/** A thread terminated this recently may be what killed its cell (V8 can abort while it tears down). */
const RECENT_KILL_MS = 5000;
const QUEUED_NOTICE_MS = 1000;
/** A cell's idle threads retire after 30 s (Piscina's idleTimeout in workers/cell/cell-runtime.ts). */
const RECENT_USER_MS = 30_000;
/** At most this much of a stopped run's streamed answer is kept as its interrupted message. */
const PARTIAL_TEXT_CAP = 256 * 1024;
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
  /** Where worker threads' database statements go (absent: every one is refused). */
  threadQueries?: ThreadQueryGate;
}) {
  const { store, relay, metrics, log, config } = deps;
  const live = new Map<string, LiveRun>();
  /** Accepted runs waiting for a thread: FIFO per user, round-robin across users. */
  const queue = createAdmission();
  /** Runs holding a thread (or on their way to one), per user and per conversation thread. */
  const activeByUser = new Map<string, number>();
  const activeByThread = new Map<string, number>();
  /** Requests being accepted right now, by idempotency key: a duplicate waits for the first one. */
  const accepting = new Map<string, Promise<RunRecord & { deduplicated?: boolean }>>();
  /** Suspects of a cell death, waiting to run alone in the quarantine cell. */
  const quarantine = new Map<string, LiveRun>();
  const isolation = { finished: 0, finishedWithViolations: 0, failures: 0, failuresAffectingOthers: 0 };
  let draining = false;
  // Runs that start to count as long-running free capacity over time, without any event to say so.
  const pumpTimer = setInterval(() => (queue.size > 0 || quarantine.size > 0) && pump(), 250);
  pumpTimer.unref();

  const bump = (map: Map<string, number>, key: string, by: number) => {
    const n = (map.get(key) ?? 0) + by;
    if (n > 0) map.set(key, n);
    else map.delete(key);
  };
  function occupy(run: LiveRun): void {
    if (run.occupying) return;
    run.occupying = true;
    bump(activeByUser, run.userId, 1);
    bump(activeByThread, run.threadId, 1);
  }
  function vacate(run: LiveRun): void {
    if (!run.occupying) return;
    run.occupying = false;
    bump(activeByUser, run.userId, -1);
    bump(activeByThread, run.threadId, -1);
  }
  /** A run may start when its user is under the cap and no other run of its conversation is active. */
  const eligible = (run: LiveRun) => (activeByUser.get(run.userId) ?? 0) < config.userMaxConcurrentRuns && !activeByThread.has(run.threadId);

  function dispatch(run: LiveRun, cell: CellHandle): void {
    occupy(run);
    run.phase = 'dispatched';
    run.dispatchedAt = Date.now();
    run.cellId = cell.id;
    run.attempt++;
    cell.runs.set(run.id, null);
    cell.lastBusyAt = Date.now();
    noteUser(cell, run.userId);
    cell.send({ type: 'run', run: assignment(run, cell.scratch.open(run.id)) });
    // The front's own record of dispatch order (tests read per-user FIFO from it, not from clocks).
    log.debug({ ...runLogFields(run), attempt: run.attempt }, 'run dispatched');
  }

  /** Remembers the user on the cell (supervisor.pick prefers it next time); forgets users idle past a thread's idle timeout. */
  function noteUser(cell: CellHandle, userId: string): void {
    const now = Date.now();
    cell.recentUsers.delete(userId);
    cell.recentUsers.set(userId, now);
    // Oldest first (re-inserted on every run): drop from the front while stale.
    for (const [user, at] of cell.recentUsers) {
      if (now - at < RECENT_USER_MS) break;
      cell.recentUsers.delete(user);
    }
  }

  function pump(): void {
    for (const run of quarantine.values()) {
      const cell = deps.cells().pickQuarantine(quarantine.size);
      if (!cell) break;
      quarantine.delete(run.id);
      dispatch(run, cell);
    }
    while (queue.size > 0) {
      const cell = deps.cells().pick();
      if (!cell) return;
      const run = queue.take(eligible);
      if (!run) return;
      dispatch(run, deps.cells().pick(run.userId) ?? cell);
    }
  }

  function isolationReport(run: LiveRun, report: RunReport | null): IsolationReport | null {
    const refused = [...new Set([...(report?.refused ?? []), ...run.refused])];
    if (!report && run.restarts.length === 0 && refused.length === 0) return null;
    return {
      leaks: report?.leaks ?? {},
      globals: report?.globals ?? [],
      contaminated: report?.contaminated ?? false,
      recycled: report?.recycled ?? null,
      cleanup_ms: report?.cleanupMs ?? null,
      cpu_demoted: report?.cpuDemoted ?? false,
      refused,
      restarts: run.restarts,
    };
  }

  function countIsolation(report: RunReport | null, error: ErrorBody | null): void {
    const violated = error?.code === 'SINGLETON_AGENT' || (report !== null && (report.contaminated || report.globals.length > 0 || Object.keys(report.leaks).length > 0));
    isolation.finished++;
    if (violated) isolation.finishedWithViolations++;
    if (error?.code === 'SINGLETON_AGENT') metrics.singletonReuse.inc();
    if (!report) return;
    if (report.contaminated) metrics.contamination.inc();
    if (report.globals.length > 0) metrics.globalsLeft.inc();
    for (const [kind, n] of Object.entries(report.leaks)) metrics.leakedResources.inc({ kind }, n);
    if (report.recycled) metrics.workerRecycles.inc({ reason: report.recycled });
    if (report.cpuDemoted) metrics.cpuDemoted.inc();
    for (const wall of report.refused ?? []) metrics.wallsHit.inc({ wall: wall.split(':')[0] });
    metrics.cleanupDuration.observe(report.cleanupMs / 1000);
  }

  function finish(
    run: LiveRun,
    status: TerminalStatus,
    error: ErrorBody | null,
    result: JsonValue | null,
    executionTimeMs: number,
    report: RunReport | null = null,
  ): void {
    if (run.phase === 'finished') return; // exactly one terminal event
    run.phase = 'finished';
    queue.remove(run);
    quarantine.delete(run.id);
    vacate(run);
    run.timers.forEach(clearTimeout);
    countIsolation(report, error);
    if (status === 'failed' || status === 'timeout') isolation.failures++;
    metrics.runsFinished.inc({ status, code: error?.code ?? 'none' });
    if (run.startedAt !== null) metrics.runDuration.observe(executionTimeMs / 1000);
    // One line per run with its outcome, timings and what it left behind; never its input or result.
    log.info(
      {
        ...runLogFields(run),
        agent: run.agentName,
        status,
        code: error?.code,
        attempts: run.attempt,
        restarts: run.restarts.length,
        queue_wait_ms: run.startedAt === null ? null : run.startedAt - run.acceptedAt,
        // Of which waiting for a free slot in the front (the rest: the cell finding and starting a thread).
        front_wait_ms: run.dispatchedAt === null ? null : run.dispatchedAt - run.acceptedAt,
        time_to_first_event_ms: run.firstEventAt === null ? null : run.firstEventAt - run.acceptedAt,
        execution_time_ms: executionTimeMs,
        total_ms: Date.now() - run.acceptedAt,
        leaks: report?.leaks ?? null,
        globals_changed: report?.globals.length ?? null,
        recycled: report?.recycled ?? null,
        cleanup_ms: report?.cleanupMs ?? null,
      },
      'run finished',
    );
    void relay.finish(run, status, error, result, executionTimeMs, isolationReport(run, report)).then(() => {
      live.delete(run.id);
      run.markSettled();
    });
  }

  function finishFromOutcome(run: LiveRun, outcome: RunOutcome, report: RunReport | null): void {
    if (outcome.status === 'completed') finish(run, 'completed', null, outcome.result, outcome.executionTimeMs, report);
    else finish(run, outcome.status, outcome.error, null, outcome.executionTimeMs, report);
  }

  /** A bystander of a cell death: not a failure. It runs again, alone, with its events continuing. */
  function restart(run: LiveRun, cell: CellHandle, reason: string): void {
    run.timers.forEach(clearTimeout);
    run.timers = [];
    vacate(run);
    run.phase = 'queued';
    run.suspect = true;
    run.partialText = '';
    run.startedAt = null;
    run.restarts.push({ attempt: run.attempt, cell: cell.id, reason });
    run.cellId = null;
    metrics.runRestarts.inc({ reason });
    relay.then(run, () => store.markRequeued(run.id));
    relay.append(run, 'run_restarted', { attempt: run.attempt + 1, reason });
    quarantine.set(run.id, run);
  }

  function stoppedBy(run: LiveRun, reason: 'cancelled' | 'timeout', message: string): void {
    const elapsed = run.startedAt === null ? 0 : Date.now() - run.startedAt;
    finish(run, reason, { code: reason === 'timeout' ? 'TIMEOUT' : 'CANCELLED', message }, null, elapsed);
  }

  function agentRepeatable(name: string): boolean {
    return deps.cells().agents().find((a) => a.name === name)?.repeatable ?? true;
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
        log.warn(runLogFields(run), 'cell did not settle a stopped run in time; settling it in the front');
        stoppedBy(run, reason, 'the run was stopped');
        const wedged = setTimeout(() => {
          if (cell && cell.runs.has(run.id)) {
            log.error({ ...runLogFields(run), cell: cell.id }, 'cell still holds a stopped run; killing the cell');
            cell.killAsWedged();
          }
        }, WEDGED_CELL_MS);
        wedged.unref();
      }, config.cancelGraceMs + SAFETY_MARGIN_MS),
    );
  }

  async function accept(userId: string, req: StartRunRequest): Promise<RunRecord> {
    if (draining) throw new CodedError('SHUTTING_DOWN', 'the server is shutting down; retry shortly', { retryAfterSeconds: 5 });
    if (!deps.cells().agents().some((a) => a.name === req.agent)) {
      throw new CodedError('BAD_REQUEST', `unknown agent ${JSON.stringify(req.agent)}; GET /v1/agents lists the agents`);
    }
    const free = deps.cells().cells().reduce((n, c) => n + c.freeSlots, 0);
    if (queue.claimed >= config.maxQueuedRuns + free) {
      metrics.runsRefused.inc({ code: 'OVERLOADED' });
      throw new CodedError('OVERLOADED', `the run queue is full (MAX_QUEUED_RUNS=${config.maxQueuedRuns}); nothing was accepted`, { retryAfterSeconds: 2 });
    }
    if (queue.claimedFor(userId) >= config.userMaxQueuedRuns) {
      metrics.runsRefused.inc({ code: 'OVERLOADED' });
      throw new CodedError('OVERLOADED', `you have ${config.userMaxQueuedRuns} runs waiting (USER_MAX_QUEUED_RUNS); nothing was accepted`, { retryAfterSeconds: 5 });
    }
    // The checks above and the queue.add below are separated by awaits: hold the place meanwhile.
    const release = queue.reserve(userId);
    try {
      return await persistAndQueue(userId, req, release);
    } finally {
      release();
    }
  }

  async function persistAndQueue(userId: string, req: StartRunRequest, release: () => void): Promise<RunRecord> {
    if (req.threadId && !(await store.findThread(userId, req.threadId))) throw new CodedError('NOT_FOUND', 'no such thread');
    if (req.threadId) {
      // Double-texting: what to do when the conversation already has a run queued or in progress.
      const busy = [...live.values()].filter((r) => r.threadId === req.threadId && r.phase !== 'finished');
      if (busy.length > 0 && req.multitask === 'reject') {
        throw new CodedError('THREAD_BUSY', `thread ${req.threadId} has a run in progress (multitask "reject")`, { retryAfterSeconds: 1 });
      }
      if (req.multitask === 'interrupt') for (const r of busy) requestStop(r, 'cancelled');
    }

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
      replayOf: req.replayOf ?? null,
    });
    metrics.runsAccepted.inc();
    // The client learns the run id (the acknowledgement, sent as this returns) before its first event;
    // every later event of the run is chained behind this one, however early its cell answers.
    relay.deliver(run, first, new Promise<void>((resolve) => setImmediate(resolve)));
    live.set(run.id, run);
    release(); // the run now counts itself
    queue.add(run);
    // A run still waiting for its slot after a second is told where it stands.
    run.timers.push(
      setTimeout(() => {
        if (run.phase === 'queued' && queue.position(run) > 0) relay.append(run, 'run_queued', { position: queue.position(run) });
      }, QUEUED_NOTICE_MS),
    );
    setImmediate(pump);
    return record;
  }

  return {
    get draining() {
      return draining;
    },

    /** Runs waiting or in flight, for per-user maxima (server/runs/user-stats.ts). */
    liveRuns(): LiveRun[] {
      return [...queue.values(), ...quarantine.values(), ...[...live.values()].filter((r) => r.phase === 'dispatched' || r.phase === 'running')];
    },

    snapshot() {
      let active = 0;
      for (const r of live.values()) if (r.phase === 'dispatched' || r.phase === 'running') active++;
      return { activeRuns: active, queuedRuns: queue.size + quarantine.size, isolation: { ...isolation } };
    },

    /**
     * Persists the request, then returns it; the caller acknowledges before any event is sent. With a
     * correlation id, the same id within 24 h returns the first run (`deduplicated`) instead of a new one.
     */
    async start(userId: string, req: StartRunRequest): Promise<RunRecord & { deduplicated?: boolean }> {
      if (!req.correlationId) return accept(userId, req);
      const key = `${userId}\u0000${req.correlationId}`;
      const pending = accepting.get(key);
      if (pending) return { ...(await pending), deduplicated: true };
      const attempt = (async () => {
        const stored = await store.findRunByCorrelation(userId, req.correlationId!, Date.now() - IDEMPOTENCY_WINDOW_MS);
        return stored ? { ...stored, deduplicated: true } : accept(userId, req);
      })();
      accepting.set(key, attempt);
      try {
        return await attempt;
      } finally {
        accepting.delete(key);
      }
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
      if (msg.type === 'thread_retired') {
        metrics.workerRecycles.inc({ reason: msg.reason });
        return;
      }
      if (msg.type === 'db_query') {
        if (deps.threadQueries) deps.threadQueries.handle(cell, msg, (runId) => live.get(runId));
        else cell.send({ type: 'db_answer', runId: msg.runId, queryId: msg.queryId, ok: false, error: { code: 'DB_QUERY_REFUSED', message: 'this server executes no database statement for worker threads' } });
        return;
      }
      if (msg.type === 'memory_exceeded') {
        log.warn({ cell: cell.id, rss_bytes: msg.rssBytes, limit_bytes: msg.limitBytes }, 'cell over CELL_MEMORY_MB');
        return;
      }
      if (msg.type !== 'run_started' && msg.type !== 'run_event' && msg.type !== 'run_finished') return;
      if (msg.type === 'run_finished') {
        cell.runs.delete(msg.runId);
        cell.scratch.close(msg.runId);
        cell.lastBusyAt = Date.now();
        // No report: the thread did not end normally (terminated, crashed, out of memory). A cell that dies
        // soon after is more likely dying of that thread than of the runs still inside it.
        if (!msg.report) cell.lastThreadKillAt = Date.now();
        setImmediate(pump);
        if (!msg.report && msg.outcome.status !== 'completed' && ['WORKER_CRASHED', 'OUT_OF_MEMORY'].includes(msg.outcome.error.code)) {
          metrics.threadDeaths.inc({ cause: msg.outcome.error.code === 'OUT_OF_MEMORY' ? 'out_of_memory' : 'exited' });
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
          metrics.runsStarted.inc();
          metrics.queueWait.observe(Math.max(0, msg.startedAt - run.acceptedAt) / 1000);
          const { startedAt, attempt } = run;
          relay.then(run, () => store.markRunning(run.id, cell.id, msg.workerId, new Date(startedAt), attempt));
          relay.append(run, 'agent_started', { status: 'running', message: `agent ${run.agentName} started` }, msg.startedAt);
          // The cell owns the deadline; this only catches a cell that stopped answering.
          run.timers.push(
            setTimeout(() => {
              if (run.phase !== 'running' || run.stopReason) return;
              log.warn(runLogFields(run), 'run outlived its deadline in the cell');
              requestStop(run, 'timeout');
            }, config.runTimeoutMs + config.cancelGraceMs + SAFETY_MARGIN_MS),
          );
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
          return;
        case 'run_finished':
          finishFromOutcome(run, msg.outcome, msg.report);
          return;
      }
    },

    /**
     * A cell died. Runs stopped meanwhile end as stopped. If one run was inside (or this is the quarantine
     * cell, which holds one at a time), that run caused it and fails with the cause's code. Otherwise the
     * culprit is unknown: every run inside is a suspect and runs again alone in quarantine, where the
     * culprit kills its cell again and is named, and the bystanders complete as if nothing had happened.
     * Agents that are not safe to repeat fail instead (collateral); attempts are bounded.
     */
    onCellExit(cell: CellHandle, exit: CellExit, runIds: string[]): void {
      metrics.cellDeaths.inc({ cause: exit.cause });
      const inside = runIds.map((id) => live.get(id)).filter((r): r is LiveRun => !!r && r.phase !== 'finished' && r.cellId === cell.id);
      const { decisions, affectedOthers } = judgeCellDeath({
        runs: inside.map((r) => ({
          id: r.id,
          phase: r.phase,
          stopReason: r.stopReason,
          attempt: r.attempt,
          agentName: r.agentName,
          undelivered: cell.undelivered.has(r.id),
          repeatable: agentRepeatable(r.agentName),
        })),
        quarantineCell: cell.quarantine,
        recentThreadKill: cell.lastThreadKillAt !== null && Date.now() - cell.lastThreadKillAt < RECENT_KILL_MS,
        killedAsWedged: cell.killedAsWedged,
        maxRunAttempts: config.maxRunAttempts,
        exit,
      });
      const byId = new Map(inside.map((r) => [r.id, r]));
      const elapsed = (r: LiveRun) => (r.startedAt === null ? 0 : Date.now() - r.startedAt);
      for (const d of decisions) {
        const run = byId.get(d.runId)!;
        switch (d.kind) {
          case 'stopped':
            stoppedBy(run, d.reason, d.message);
            break;
          case 'requeue':
            vacate(run);
            run.phase = 'queued';
            run.cellId = null;
            run.dispatchedAt = null;
            run.attempt--;
            // Where it came from: a suspect waits for quarantine again; any other run keeps its place in line
            // (a later message of the same conversation must not overtake it).
            if (run.suspect) quarantine.set(run.id, run);
            else queue.addFirst(run);
            break;
          case 'fail':
            if (d.collateral) metrics.collateralRuns.inc();
            finish(run, 'failed', d.error, null, elapsed(run));
            break;
          case 'restart':
            restart(run, cell, d.reason);
            break;
        }
      }
      if (affectedOthers) isolation.failuresAffectingOthers++;
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
          queue.add(run);
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
      clearInterval(pumpTimer);
      for (const run of [...queue.values(), ...quarantine.values()]) {
        run.timers.forEach(clearTimeout);
        run.markSettled();
      }
      queue.clear();
      quarantine.clear();
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
