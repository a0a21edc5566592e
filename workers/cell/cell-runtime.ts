/**
 * A cell: a supervised child process that hosts one Piscina pool. Transport-agnostic: it gets a `send`
 * function and is handed messages, so it can be driven without forking. Never imports agent code itself;
 * only its workers (the pool's workers) do.
 */
import os from 'node:os';
import path from 'node:path';
import { Piscina } from 'piscina';
import { BURST_WORKERS_PER_WORKER, CELL_EXIT_DESCRIPTORS, CELL_EXIT_MEMORY, CELL_EXIT_SCRATCH, DEMOTED_NICE, maxWorkersPerCell, type CellConfig, type CellStats, type CellToFront, type FrontToCell, type ProcessMetricFamily } from '../../protocol/cell-messages.js';
import { pick } from '../../protocol/pick.js';
import { compileQueryCompiler } from '../../prisma/query-compiler.js';
import { WORKER_SETTINGS, type DescribeReply, type WorkerData } from '../../protocol/worker-messages.js';
import { createMemoryWatchdog } from './memory-watchdog.js';
import { createModelBroker, settleFetch } from './model-broker.js';
import { createRunDispatcher, type RunDispatcher } from './run-dispatcher.js';
import { createIdleWatch, type IdleWatch } from './idle-watch.js';
import { createScratchWatch, type ScratchUsage, type ScratchWatch } from './scratch-watch.js';
import { createSpareWorkers, spareTasks } from './spare-workers.js';
import { createUserAffinity, routeOptions } from './user-affinity.js';
import { describeFirstWarm, describeOn, firstIdle } from './warm-first.js';
import { budgetWorkerPrints } from './print-budget.js';
import { checkWorkerMessages } from './worker-messages.js';
import { firstWarmWorker, warmWorkers } from '../worker/warm-up-turn.js';
import { messageOf } from '../../protocol/errors.js';

const STATS_INTERVAL_MS = 1000;
/** How long the cell waits for a worker to warm before it asks any worker to describe its agents. */
const FIRST_WARM_MAX_WAIT_MS = 10_000;
/**
 * Process metrics are a few kB and ~1 ms of CPU to collect: every 5 s is fresh enough for a 15 s scrape interval
 * and costs an idle cell little (it was 2 s).
 */
const PROCESS_METRICS_INTERVAL_MS = 5000;

/**
 * A worker's young generation (V8's semi-spaces), in MiB. V8 grows it up to this cap while a worker warms up
 * (lockdown and module loading keep almost everything they allocate) and an idle worker never shrinks it back:
 * at runMemoryMb / 8 (16 MiB at the default 128) it was ~7 MiB of every idle worker's PSS. 2 MiB (V8's floor),
 * against 16, cost no measurable CPU on an allocation-heavy JSON loop (within the ±5% noise); bigger heaps get
 * 1/128 of theirs, at most 16.
 */
export const youngGenerationMb = (runMemoryMb: number) => Math.max(2, Math.min(16, Math.floor(runMemoryMb / 128)));

export function createCellRuntime(deps: {
  /**
   * `written`: called once `msg` is in the front's channel (the cell may die next and the front still reads it).
   * `bytes`: its payload's size (a run event's), for the outbox's fair shares (fair-outbox.ts).
   */
  send: (msg: CellToFront, written?: () => void, bytes?: number) => void;
  exit: (code: number) => void;
  log: (obj: object, msg: string) => void;
  /** The process's stdout and stderr, into which Node pipes each worker's (print-budget.ts keeps their budget). */
  outputs: NodeJS.WritableStream[];
  /** The cell's default process metrics (its own prom-client registry), reported to the front. */
  processMetrics?: () => Promise<ProcessMetricFamily[]>;
}) {
  let pool: Piscina | null = null;
  let dispatcher: RunDispatcher | null = null;
  let statsTimer: NodeJS.Timeout | null = null;
  let metricsTimer: NodeJS.Timeout | null = null;
  let watchdog: ReturnType<typeof createMemoryWatchdog> | null = null;
  let scratchWatch: ScratchWatch | null = null;
  let idleWatch: IdleWatch | null = null;
  const readyWorkers = new Set<number>();
  let cellId = '';
  // Every cell log line names its cell, like the front's and the workers' lines do.
  const log = (obj: object, msg: string) => deps.log({ cell: cellId || undefined, ...obj }, msg);
  const sendProcessMetrics = () => {
    deps.processMetrics?.().then(
      (metrics) => deps.send({ type: 'process_metrics', metrics }),
      (err: unknown) => log({ err: messageOf(err) }, 'process metrics collection failed'),
    );
  };
  let statsSoon: NodeJS.Timeout | null = null;
  const sendStats = () => {
    if (statsSoon) clearTimeout(statsSoon);
    statsSoon = null;
    deps.send({ type: 'stats', stats: stats() });
  };

  async function init(config: CellConfig) {
    cellId = config.cellId;
    // Compiled when a worker first asks (its first ctx.db query): agents that never use ctx.db never pay for it.
    let compiled: Promise<WebAssembly.Module | null> | null = null;
    const queryCompiler = () =>
      (compiled ??= compileQueryCompiler(config.dbProvider).catch((err: unknown) => {
        log({ err: messageOf(err) }, "Prisma's query compiler could not be compiled for the cell: each worker compiles its own");
        return null;
      }));
    // warmUpLock: shared by the cell's workers, so they warm up one at a time, and list themselves once warm
    // (workers/worker/warm-up-turn.ts): room for as many as the pool starts with, and more.
    const workerConfig: WorkerData = {
      ...pick(config, WORKER_SETTINGS),
      builtinAgentsDir: path.join(__dirname, '../agents'),
      warmUpLock: new Int32Array(new SharedArrayBuffer(4 * (1 + maxWorkersPerCell(config)))),
      // eager: every worker loads it while warming up, with no run's port to ask on.
      queryCompiler: config.workerDbWarmup === 'eager' ? await queryCompiler() : null,
    };
    // Fresh workers beyond Piscina's minimum while they are taken or end (same_user only: spare-workers.ts).
    let spares: ReturnType<typeof createSpareWorkers> | null = null;
    // same_user: a worker serves one user for its life (user-affinity.ts); any: Piscina's least-busy choice.
    const affinity =
      config.workerReuse === 'same_user'
        ? createUserAffinity({
            workers: () => pool?.threads.length ?? 0,
            ready: () => readyWorkers.size,
            queued: () => pool?.queueSize ?? 0,
            maxWorkers: maxWorkersPerCell(config),
            warm: (id): boolean => knownWarm(id),
            onFreshTaken: () => setImmediate(() => spares?.freshTaken()),
          })
        : null;
    // Before the first worker starts: what its code sends as Node's own messages is checked, and Node pipes its
    // output as it does.
    checkWorkerMessages((worker, why) => log({ worker, refused: why }, "a worker thread sent a message of Node's that Node never sends (its code wrote it); the worker is terminated"));
    budgetWorkerPrints({
      outputs: deps.outputs,
      bytesPerSecond: config.limits.logBytesPerSecond,
      threads: () => pool?.threads ?? [],
      runOn: (id) => dispatcher?.runOn(id),
      report: (fields) => log(fields, 'a worker thread printed past RUN_LOG_BYTES_PER_S; what did not fit was dropped'),
    });
    pool = new Piscina({
      filename: path.join(__dirname, '../worker/run-entry.js'),
      // Warm spares: workers beyond the cell's capacity, idle and warm, so a run never waits for a worker
      // to start when one was recycled, crashed or is held by a long run (a new worker is ready only once warm).
      minThreads: config.workersPerCell + config.warmSpareWorkers,
      // Burst workers: runs that outlive LONG_RUN_MS stop counting against the cell's capacity (the front
      // decides), so hung runs never starve short ones; the extra workers retire after idleTimeout.
      maxThreads: maxWorkersPerCell(config),
      // Queueing happens in the front, where it is persisted and fair; the cell only takes what fits.
      maxQueue: config.workersPerCell * (1 + BURST_WORKERS_PER_WORKER),
      idleTimeout: 30_000,
      // Piscina's default atomics 'sync' would freeze a worker's event loop between tasks (timers, sockets).
      atomics: 'disabled',
      concurrentTasksPerWorker: 1,
      closeTimeout: 2000,
      resourceLimits: { maxOldGenerationSizeMb: config.runMemoryMb, maxYoungGenerationSizeMb: youngGenerationMb(config.runMemoryMb) },
      workerData: workerConfig,
      loadBalancer: spareTasks(describeFirstWarm(affinity?.balancer ?? firstIdle((id) => knownWarm(id)))),
    });
    // same_user only: with any, every idle worker serves every user, and Piscina's minimum keeps enough of them.
    spares = affinity
      ? createSpareWorkers({ pool, maxWorkers: maxWorkersPerCell(config), warmSpares: config.warmSpareWorkers, fresh: () => affinity.fresh(pool!.threads.map((t) => t.threadId)) })
      : null;
    // Piscina counts the workers it starts with ready before they are (warm-first.ts): those are known warm once
    // listed in warmUpLock (read only while one of them is not yet); the others once Piscina reports them (it
    // waits for them to warm).
    const notYetWarm = new Set<number>(pool.threads.map((t) => t.threadId));
    const knownWarm = (id: number): boolean => {
      if (!notYetWarm.has(id)) return readyWorkers.has(id);
      if (!warmWorkers(workerConfig.warmUpLock).includes(id)) return false;
      notYetWarm.delete(id);
      return true;
    };
    if (affinity) pool.on('workerDestroy', (worker: { id: number }) => affinity.forget(worker.id));
    // Workers Piscina reports ready; pool.threads counts the others too.
    pool.on('workerCreate', (worker: { id: number }) => readyWorkers.add(worker.id));
    pool.on('workerDestroy', (worker: { id: number }) => {
      readyWorkers.delete(worker.id);
      deps.send({ type: 'worker_gone', workerId: worker.id });
      // Piscina starts its replacement now: the watchdog keeps the busy pace while it warms.
      watchdog?.workerStarting();
    });
    // Without a listener, a worker dying while idle would take the cell down.
    pool.on('error', (err: Error) => log({ err: err.message }, 'pool error'));
    // config.llmApiKey stays here, in the cell's main thread: workers reach the model through the broker.
    // fetch is settled once the cell is ready (below): before, it competed for the CPU with the first worker's
    // start, which is what the cell waits for (~40 ms on an idle machine). A model request waits for it.
    let fetchSettled: Promise<void> | null = null;
    const fetchReady = () => (fetchSettled ??= settleFetch());
    const broker = createModelBroker({ baseUrl: config.agentSettings.llm.baseUrl, apiKey: config.llmApiKey, operations: config.llmOperations, log, fetchReady });
    dispatcher = createRunDispatcher({
      pool,
      broker,
      send: deps.send,
      runTimeoutMs: config.runTimeoutMs,
      cancelGraceMs: config.cancelGraceMs,
      limits: config.limits,
      log,
      route: affinity ? (run) => routeOptions(run.userId) : undefined,
      queryCompiler,
      onWorkerEnded: () => spares?.workerEnded(),
      onCountsChanged: () => {
        watchdog?.runsInCell(dispatcher?.busy ?? 0);
        // Report soon after a run settles (so gauges return to idle promptly), at most once per 100 ms.
        if (!statsSoon) statsSoon = setTimeout(sendStats, 100);
      },
    });
    const firstWarm = await firstWarmWorker(workerConfig.warmUpLock, FIRST_WARM_MAX_WAIT_MS);
    const reply = (await pool.run({ kind: 'describe', ...(firstWarm === null ? {} : describeOn(firstWarm)) })) as DescribeReply;
    deps.send({ type: 'ready', agents: reply.agents });
    fetchReady().catch((err: unknown) => log({ err: messageOf(err) }, 'settling fetch failed'));
    sendStats();
    statsTimer = setInterval(sendStats, STATS_INTERVAL_MS);
    statsTimer.unref();
    sendProcessMetrics();
    metricsTimer = setInterval(sendProcessMetrics, PROCESS_METRICS_INTERVAL_MS);
    metricsTimer.unref();
    watchdog = createMemoryWatchdog({
      limitBytes: config.cellMemoryMb * 1024 * 1024,
      rssBytes: () => process.memoryUsage.rss(),
      // A worker holds the warm-up turn while it warms (agent modules included); Piscina's first workers count as
      // created at once, replacements only once ready.
      warming: () => Atomics.load(workerConfig.warmUpLock, 0) !== 0 || (pool?.threads.length ?? 0) > readyWorkers.size,
      onExceeded: (rssBytes, limitBytes) => {
        deps.send({ type: 'memory_exceeded', rssBytes, limitBytes });
        log({ rss_bytes: rssBytes, limit_bytes: limitBytes }, 'cell memory limit exceeded (CELL_MEMORY_MB); exiting');
        deps.exit(CELL_EXIT_MEMORY);
      },
    });
    watchdog.start();
    const budget = { bytes: config.limits.scratchBytes, entries: config.limits.scratchEntries };
    const held = (usage: ScratchUsage) =>
      usage.unreadable ? 'a folder it cannot read' : `${Math.round(usage.bytes / 1048576)} MiB in ${usage.entries} names`;
    scratchWatch = createScratchWatch({
      budget,
      cellDir: config.scratchDir,
      runs: () => dispatcher?.scratchFolders() ?? [],
      onRunOver: (runId, usage) => {
        log({ run_id: runId, scratch_bytes: usage.bytes, scratch_entries: usage.entries, unreadable: usage.unreadable || undefined }, "a run's scratch folder is over its budget (RUN_SCRATCH_MB, RUN_SCRATCH_FILES); the run fails and its worker is terminated");
        dispatcher?.fail(runId, { code: 'LIMIT_EXCEEDED', message: `the run's scratch folder is over its budget (RUN_SCRATCH_MB=${Math.round(budget.bytes / 1048576)}, RUN_SCRATCH_FILES=${budget.entries}): it held ${held(usage)}; its thread was terminated` });
      },
      onLooseOver: (usage) => {
        log({ scratch_bytes: usage.bytes, scratch_entries: usage.entries }, "the cell's folder holds more than a run's scratch budget beside its runs' folders; exiting (its runs run again alone, and the culprit is named)");
        deps.exit(CELL_EXIT_SCRATCH);
      },
      onStarved: (forMs) => {
        log({ starved_ms: forMs }, "the cell has had no file descriptor to open its runs' scratch folders with; exiting, since it cannot see what they write (its runs run again alone, and the culprit is named)");
        deps.exit(CELL_EXIT_DESCRIPTORS);
      },
    });
    scratchWatch.start();
    // A warm worker without a started run whose thread stays busy runs code an earlier run left: it is ended.
    idleWatch = createIdleWatch({
      workers: () => pool?.threads ?? [],
      running: () => dispatcher?.runningWorkers() ?? new Set(),
      lastRunEnded: (id) => dispatcher?.lastRunEnded(id),
      warm: (id) => knownWarm(id),
      onBusyIdle: (worker, busyMs) => {
        log({ worker: worker.threadId, busy_ms: busyMs }, 'a worker without a run kept its thread busy (code an earlier run left behind); ending it');
        void pool?.threads.find((t) => t.threadId === worker.threadId)?.terminate();
      },
    });
    idleWatch.start();
  }

  function stats(): CellStats {
    const mem = process.memoryUsage();
    const workers = dispatcher?.workerStats() ?? [];
    return {
      workersAlive: pool?.threads.length ?? 0,
      workersBusy: dispatcher?.busy ?? 0,
      activeContexts: workers.reduce((n, w) => n + w.activeContexts, 0),
      liveAgentInstances: workers.reduce((n, w) => n + w.liveAgentInstances, 0),
      dbClients: workers.reduce((n, w) => n + w.dbClients, 0),
      heapUsedBytes: mem.heapUsed,
      rssBytes: mem.rss,
      externalBytes: mem.external + mem.arrayBuffers,
    };
  }

  return {
    async handle(msg: FrontToCell) {
      switch (msg.type) {
        case 'init':
          try {
            await init(msg.config);
          } catch (err) {
            deps.send({ type: 'init_failed', error: { code: 'INTERNAL', message: messageOf(err) } });
            deps.exit(3);
          }
          return;
        case 'run':
          dispatcher!.start(msg.run, msg.traceparent);
          watchdog?.runsInCell(dispatcher!.busy);
          scratchWatch?.runArrived();
          return;
        case 'cancel':
          dispatcher?.stop(msg.runId, msg.reason);
          return;
        case 'demote_os_thread':
          try {
            os.setPriority(msg.tid, DEMOTED_NICE);
          } catch {
            // the OS thread just ended
          }
          return;
        case 'db_answer':
          dispatcher?.answerDb(msg);
          return;
        case 'nameless_files':
          scratchWatch?.namelessFiles(msg.byFolder);
          return;
        case 'shutdown':
          if (statsTimer) clearInterval(statsTimer);
          if (metricsTimer) clearInterval(metricsTimer);
          // The cell is ending at the front's request: an exit for memory now would be misread as a run's doing.
          watchdog?.stop();
          scratchWatch?.stop();
          idleWatch?.stop();
          await pool?.destroy().catch(() => undefined);
          deps.exit(0);
          return;
      }
    },
  };
}
