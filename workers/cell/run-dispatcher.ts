/**
 * Runs assignments on the cell's Piscina pool, one MessagePort per run, and settles each run exactly once:
 * from the worker's final `done` message, or from the way its worker ended (terminated, crashed, out of
 * memory). Owns each run's deadline, counted from the moment its worker started it: at RUN_TIMEOUT_MS the
 * agent is asked to stop (ctx.signal), and CANCEL_GRACE_MS later its worker is terminated. The front's safety
 * nets behind this one: server/runs/deadlines.ts.
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import type { Piscina } from 'piscina';
import type { CellToFront, FrontToCell, ModelCallTiming, RunAssignment, RunLimits, RunOutcome, RunReport } from '../../protocol/cell-messages.js';
import { stopError } from '../../protocol/stop-errors.js';
import { RUN_SEAL_AT, RUN_SHARED_INT32S, type CellToWorker, type RefusalReason, type StopReason, type WorkerStats, type WorkerTask } from '../../protocol/worker-messages.js';
import type { ModelBroker, ModelBrokerSession } from './model-broker.js';
import { messageOf, type ErrorBody } from '../../protocol/errors.js';
import { createRunPortCheck, type RunPortCheck } from './run-port-check.js';

interface InFlight {
  run: RunAssignment;
  port: MessagePort;
  abort: AbortController;
  startedAt: number | null;
  stopReason: StopReason | null;
  timers: NodeJS.Timeout[];
  settled: boolean;
  /** The worker's `done`, kept until its Piscina task has resolved too. */
  done: { outcome: RunOutcome; report: RunReport } | null;
  taskResolved: boolean;
  /** The run's model requests (the broker adds the key); closed, aborting them, when the run settles. */
  model: ModelBrokerSession;
  traceparent: string | undefined;
  /** Everything from the run's port goes through it (agent code can reach the port). */
  check: RunPortCheck;
  /** The worker that started the run (its `started`). */
  workerId: number | null;
  /** Times the run was sent again because a worker refused it (user_switch): bounded, since agent code could forge that too. */
  redispatches: number;
}

export interface RunDispatcher {
  /** `traceparent`: the front traces the run (its model calls are reported; the worker never sees it). */
  start(run: RunAssignment, traceparent?: string): void;
  stop(runId: string, reason: StopReason): void;
  /** Routes the front's answer to a db query to the run's port; dropped if the run has ended. */
  answerDb(msg: Extract<FrontToCell, { type: 'db_answer' }>): void;
  readonly busy: number;
  workerStats(): WorkerStats[];
  /** The runs in the cell, with their scratch folders (scratch-watch.ts). */
  scratchFolders(): Iterable<{ runId: string; scratchDir: string }>;
  /** Fails a run the cell found over a budget (its scratch folder): its worker is terminated. */
  fail(runId: string, error: ErrorBody): void;
  /** The workers running a started run of the cell (workers/cell/idle-watch.ts watches the others). */
  runningWorkers(): Set<number>;
  /** When a worker last ended a started run (Date.now()); undefined if it never did. */
  lastRunEnded(workerId: number): number | undefined;
  /** The started run a worker runs now, if any. */
  runOn(workerId: number): string | undefined;
}

/** W3C Trace Context's traceparent (version 00): its second field is the trace id. */
const TRACEPARENT = /^00-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** How many times a run is sent to another worker after one refused it (a user_switch) before it fails. */
const MAX_REDISPATCHES = 3;

/** How long to wait for a worker's `done` after Piscina resolved its task (piscinajs/piscina#133). */
const DONE_GRACE_MS = 2000;

export function createRunDispatcher(deps: {
  pool: Piscina;
  /** `written`: called once `msg` is in the front's channel. */
  send: (msg: CellToFront, written?: () => void, bytes?: number) => void;
  runTimeoutMs: number;
  cancelGraceMs: number;
  /** The run's output caps, checked again on everything its port carries (run-port-check.ts). */
  limits: RunLimits;
  log: (fields: Record<string, unknown>, msg: string) => void;
  /** Worker-level counts changed: the cell reports them soon. */
  onCountsChanged: () => void;
  broker: ModelBroker;
  /** Extra Piscina task fields for a run (THREAD_REUSE=same_user: its user, for the load balancer). */
  route?: (run: RunAssignment) => object;
  /** Prisma's query compiler, compiled once by the cell (prisma/query-compiler.ts); null if it could not be. */
  queryCompiler: () => Promise<WebAssembly.Module | null>;
  /** A run's worker ended with the run, or was retired before it (spare-workers.ts). */
  onWorkerEnded?: () => void;
}): RunDispatcher {
  const inFlight = new Map<string, InFlight>();
  const statsByWorker = new Map<number, WorkerStats>();
  /** Per worker, when a started run of it last ended (idle-watch.ts: a run between two checks is no idle time). */
  const runEndedAt = new Map<number, number>();

  function settle(f: InFlight, outcome: RunOutcome, report: RunReport | null = null) {
    if (f.settled) return;
    f.settled = true;
    if (f.workerId !== null) runEndedAt.set(f.workerId, Date.now());
    // Once anything on the port was refused, the report says `port` and the worker is retired.
    report = f.check.report(report);
    f.timers.forEach(clearTimeout);
    const modelRefused = f.model.refused();
    if (modelRefused.length && report) report = { ...report, refused: [...(report.refused ?? []), ...modelRefused] };
    f.model.close();
    f.port.close();
    inFlight.delete(f.run.runId);
    // A worker that must not serve again is terminated now; Piscina starts a fresh one.
    if (report?.recycled) f.abort.abort();
    deps.send({ type: 'run_finished', runId: f.run.runId, outcome, report });
    deps.onCountsChanged();
    // Its worker ended with it: recycled, or the run had started and its task failed (terminated, crashed, out of
    // memory). A run stopped or refused before it started ended no worker.
    if (report ? report.recycled : f.startedAt !== null && !f.taskResolved) deps.onWorkerEnded?.();
  }

  function stop(f: InFlight, reason: StopReason) {
    if (f.settled || f.stopReason) return;
    f.stopReason = reason;
    // Cooperative first (the agent's ctx.signal), then hard: terminate the worker.
    f.port.postMessage({ type: 'abort', reason } satisfies CellToWorker);
    f.timers.push(setTimeout(() => f.abort.abort(), f.startedAt === null ? 0 : deps.cancelGraceMs));
  }

  /**
   * The worker refused the run (RefusalReason): retire it and dispatch the run again. The run never started, so this is no attempt and no failure; the front only counts the retired worker.
   */
  function redispatch(f: InFlight, reason: RefusalReason) {
    if (f.settled) return;
    deps.send({ type: 'worker_retired', reason });
    if (f.stopReason) {
      settle(f, crashOutcome(f, null));
      f.abort.abort();
      deps.onWorkerEnded?.();
      return;
    }
    sendAgain(f);
  }

  /** The run never started (no agent code of it ran): it goes to another worker, as no attempt and no failure. */
  function sendAgain(f: InFlight) {
    f.settled = true;
    f.timers.forEach(clearTimeout);
    f.model.close();
    f.port.close();
    inFlight.delete(f.run.runId);
    f.abort.abort();
    deps.onWorkerEnded?.();
    start(f.run, f.traceparent, f.redispatches + 1);
  }

  function crashOutcome(f: InFlight, err: unknown): RunOutcome {
    const executionTimeMs = f.startedAt === null ? 0 : Date.now() - f.startedAt;
    if (f.stopReason) return { status: f.stopReason, error: stopError(f.stopReason, 'terminated'), executionTimeMs };
    const code = (err as { code?: unknown })?.code;
    if (code === 'ERR_WORKER_OUT_OF_MEMORY') {
      return { status: 'failed', error: { code: 'OUT_OF_MEMORY', message: 'the run exceeded its heap budget (RUN_MEMORY_MB) and its thread was terminated' }, executionTimeMs };
    }
    return { status: 'failed', error: { code: 'WORKER_CRASHED', message: `the run's worker thread died: ${messageOf(err)}` }, executionTimeMs };
  }

  return {
    get busy() {
      return inFlight.size;
    },
    workerStats() {
      const alive = new Set(deps.pool.threads.map((t) => t.threadId));
      for (const id of statsByWorker.keys()) if (!alive.has(id)) statsByWorker.delete(id);
      for (const id of runEndedAt.keys()) if (!alive.has(id)) runEndedAt.delete(id);
      return [...statsByWorker.values()];
    },
    stop(runId, reason) {
      const f = inFlight.get(runId);
      if (f) stop(f, reason);
    },
    runningWorkers() {
      const ids = new Set<number>();
      for (const f of inFlight.values()) if (f.workerId !== null) ids.add(f.workerId);
      return ids;
    },
    lastRunEnded(workerId) {
      return runEndedAt.get(workerId);
    },
    runOn(workerId) {
      for (const f of inFlight.values()) if (f.workerId === workerId) return f.run.runId;
      return undefined;
    },
    *scratchFolders() {
      for (const f of inFlight.values()) yield { runId: f.run.runId, scratchDir: f.run.scratchDir };
    },
    fail(runId, error) {
      const f = inFlight.get(runId);
      if (!f || f.settled) return;
      // Terminated, not asked: a run writing in a synchronous loop would never see ctx.signal.
      f.abort.abort();
      settle(f, { status: 'failed', error, executionTimeMs: f.startedAt === null ? 0 : Date.now() - f.startedAt });
    },
    answerDb(msg) {
      const f = inFlight.get(msg.runId);
      if (!f || f.settled) return;
      const answer: CellToWorker = msg.ok ? { type: 'db_answer', id: msg.queryId, ok: true, result: msg.result } : { type: 'db_answer', id: msg.queryId, ok: false, error: msg.error };
      f.port.postMessage(answer);
    },
    start,
  };

  function start(run: RunAssignment, traceparent?: string, redispatches = 0) {
    const { port1, port2 } = new MessageChannel();
    // Shared memory, not a message: the worker waits for the start flag without a turn of either event loop, and
    // reads the seal only as it sends its done (no message carries it before).
    const startRecorded = new Int32Array(new SharedArrayBuffer(RUN_SHARED_INT32S * 4));
    crypto.getRandomValues(startRecorded.subarray(RUN_SEAL_AT, RUN_SEAL_AT + 2));
    const seal: [number, number] = [startRecorded[RUN_SEAL_AT], startRecorded[RUN_SEAL_AT + 1]];
    const eventsTaken = new Int32Array(new SharedArrayBuffer(4));
    // Traced runs only: each model request's timing goes to the front, which makes its span.
    const traceId = traceparent ? TRACEPARENT.exec(traceparent)?.[1] : undefined;
    const tracing = traceId ? { traceId, onCall: (call: ModelCallTiming) => deps.send({ type: 'model_call', runId: run.runId, call }) } : undefined;
    const f: InFlight = {
      run,
      port: port1,
      abort: new AbortController(),
      startedAt: null,
      stopReason: null,
      timers: [],
      settled: false,
      done: null,
      taskResolved: false,
      model: deps.broker.open(run.runId, (reply) => port1.postMessage(reply satisfies CellToWorker), tracing),
      traceparent,
      redispatches,
      workerId: null,
      check: createRunPortCheck(
        deps.limits,
        seal,
        () => deps.pool.threads.map((t) => t.threadId),
        (why) => {
          // Code in the worker spoke for its runtime: the run fails now and the worker is retired (settle).
          deps.log({ run_id: run.runId, refused: why }, "a message on a run's port was refused: code in its worker wrote it; the run fails and its worker is retired");
          const executionTimeMs = f.startedAt === null ? 0 : Date.now() - f.startedAt;
          settle(f, { status: 'failed', error: { code: 'AGENT_ERROR', message: `the run's code sent its cell a message the worker never sends (${why}); its worker was retired` }, executionTimeMs });
        },
      ),
    };
    inFlight.set(run.runId, f);
    // A message the port could not read back arrives as 'messageerror': unheard, a lost `done` left the run to its deadline.
    port1.on('messageerror', () => f.settled || f.check.unreadable());
    port1.on('message', (raw: unknown) => {
      // Every event read counts, refused or late ones too: the worker waits for the count to post more.
      if ((raw as { type?: unknown } | null)?.type === 'event') {
        Atomics.add(eventsTaken, 0, 1);
        Atomics.notify(eventsTaken, 0);
      }
      if (f.settled) return;
      const msg = f.check.admit(raw);
      if (!msg) return;
      if (f.model.handle(msg)) return;
      if (msg.type === 'started') {
        f.startedAt = msg.startedAt;
        f.workerId = msg.workerId;
        // The deadline starts when the worker starts the run, not when it was queued (piscinajs/piscina#869).
        f.timers.push(setTimeout(() => stop(f, 'timeout'), deps.runTimeoutMs));
        // The worker runs agent code only once the front is sure to hear of the start: a cell that dies before
        // that leaves a run the front knows never ran (not a suspect of the death), even one aborted at once.
        deps.send({ type: 'run_started', runId: run.runId, workerId: msg.workerId, startedAt: msg.startedAt }, () => {
          Atomics.store(startRecorded, 0, 1);
          Atomics.notify(startRecorded, 0);
        });
      } else if (msg.type === 'event') {
        deps.send({ type: 'run_event', runId: run.runId, event: msg.event }, undefined, msg.bytes);
      } else if (msg.type === 'refused') {
        if (f.redispatches >= MAX_REDISPATCHES) {
          settle(f, { status: 'failed', error: { code: 'WORKER_CRASHED', message: `the run was refused by ${MAX_REDISPATCHES + 1} workers in a row (${msg.reason})` }, executionTimeMs: 0 });
          f.abort.abort();
          return;
        }
        redispatch(f, msg.reason);
      } else if (msg.type === 'db_query') {
        // The run id is the one this port was made for: whatever the worker sends, it asks for this run.
        // The front's gate checks everything else (shape, statement, user).
        deps.send({ type: 'db_query', runId: run.runId, queryId: msg.id, kind: msg.kind, query: msg.query });
      } else if (msg.type === 'query_compiler') {
        void deps.queryCompiler().then((module) => f.settled || f.port.postMessage({ type: 'query_compiler', module } satisfies CellToWorker));
      } else if (msg.type === 'stats') {
        statsByWorker.set(msg.stats.workerId, msg.stats);
        deps.onCountsChanged();
      } else if (msg.type === 'done') {
        // The run is over: whatever model request it left open is aborted now, not when its task resolves.
        f.model.close();
        statsByWorker.set(msg.stats.workerId, msg.stats);
        // Report the run finished only once its worker is free again (its task resolved): the front then
        // sends the next run into a free worker, instead of Piscina queueing it or starting a burst worker
        // for it, which would let a later run start first. A worker to recycle never resolves: settle now.
        if (f.taskResolved || msg.report.recycled) settle(f, msg.outcome, msg.report);
        else f.done = { outcome: msg.outcome, report: msg.report };
      }
    });
    const task: WorkerTask = { kind: 'run', run, port: port2, startRecorded, eventsTaken, ...(tracing ? { traceId: tracing.traceId } : {}) };
    Object.assign(task, deps.route?.(run));
    deps.pool.run(task, { transferList: [port2], signal: f.abort.signal }).then(
      () => {
        f.taskResolved = true;
        if (f.done) return settle(f, f.done.outcome, f.done.report);
        // The runtime posts a run's `done` before it answers the task, but the port's last messages usually arrive
        // after the answer: give them time. The answer itself only says the worker is free (code holding Piscina's
        // port could answer for it, and the run's deadline would be gone with the run): without a `done`, the run
        // failed, and its worker, whatever it still runs, is ended.
        f.timers.push(
          setTimeout(() => {
            settle(f, crashOutcome(f, new Error('it answered the run without reporting its end')));
            if (f.workerId !== null) void deps.pool.threads.find((t) => t.threadId === f.workerId)?.terminate();
          }, DONE_GRACE_MS),
        );
      },
      (err: unknown) => {
        // Let messages the worker posted before it ended drain first; a `done` among them wins.
        setImmediate(() => {
          // Its worker ended before the run started (one the idle watch ended: code of an earlier run kept it busy,
          // so it never read this task): nothing of this run ran, and another worker takes it.
          if (!f.settled && f.startedAt === null && !f.stopReason && f.redispatches < MAX_REDISPATCHES) return sendAgain(f);
          settle(f, crashOutcome(f, err));
          // A started run's task failed without its done: its worker ended already (terminated, crashed, out of
          // memory), or its runtime threw before the done (agent code can make it: a getter it put on a timer it
          // left). Either way that worker, with whatever the run left in it, serves no other run.
          if (f.workerId !== null) void deps.pool.threads.find((t) => t.threadId === f.workerId)?.terminate();
        });
      },
    );
  }
}
