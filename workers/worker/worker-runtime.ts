/**
 * One worker's runtime: its Prisma client (one per worker), its agent registry and factory, and
 * the execution of one run at a time. Everything a run touches is built per run and released after it;
 * what a run leaves behind (globals, open resources, an agent that never settled) retires the worker.
 */
import { threadId as workerId, MessagePort } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { Db } from '../../prisma/client-type.js';
import { DEMOTED_NICE, type RunAssignment, type RunOutcome, type RunReport } from '../../protocol/cell-messages.js';
import type { Agent } from '../agent-contract.js';
import { RUN_SEAL_AT, type CellToWorker, type DescribeReply, type StopReason, type WorkerConfig, type WorkerStats, type WorkerTask, type WorkerToCell } from '../../protocol/worker-messages.js';
import { threadsGet } from '../../prisma/scoped-queries.js';
import { createAgentFactory } from './agent-factory.js';
import type { DbChannel } from './db-forwarding.js';
import type { AgentRegistry } from './agent-registry.js';
import { deepFreeze } from '../../protocol/deep-freeze.js';
import { createExecutionContext, type ExecutionContextHandle } from './execution-context.js';
import { recycleReason } from './recycle-reason.js';
import type { HandleTracker } from './handle-tracker.js';
import { mergeLeaks } from './handle-tracker.js';
import { activeResources, adoptChanges, changedGlobals, leakedResources, settleLazyGlobals, snapshotGlobals, type GlobalsSnapshot } from './isolation-check.js';
import { completedOutcome, failedOutcome, stoppedOutcome } from './outcome.js';
import os from 'node:os';
import { preloadLlm } from '../llm/run-llm.js';
import { createBrokerLink } from '../llm/broker-fetch.js';
import { isConfigured } from '../llm/settings.js';
import { messageOf } from '../../protocol/errors.js';

const CLEANUP_TIMEOUT_MS = 2000;
/**
 * Taken as this module loads, before any agent module does: with THREAD_LOCKDOWN=0 agent code can replace
 * MessagePort.prototype.postMessage, Atomics.load or os.getPriority, and a patch the runtime calls after the isolation
 * check (it reads the seal and its priority after it) rewrote the sealed `done` (its outcome, its report), read the next
 * run's seal as it waited to start, or took Piscina's port. Everything the runtime calls between the check and its
 * answer is either compared by the check or taken here.
 */
const postMessage = MessagePort.prototype.postMessage;
const apply = Reflect.apply;
const atomicsLoad = Atomics.load;
const atomicsWait = Atomics.wait;
// os's exports are not among what the isolation check compares (lockdown or not), and the runtime asks its priority
// back after it: a patch there put a postMessage patch in after the check, which took Piscina's port and the next task.
const getPriority = os.getPriority;
const setPriority = os.setPriority;
/** Looks again after these pauses before calling something a leak (a starved CPU closes sockets late). */
const LEAK_RECHECKS_MS = [20, 100, 300];

class StopSignal extends Error {
  constructor(readonly reason: StopReason | 'limit') {
    super(`run stopped: ${reason}`);
  }
}

export function createWorkerRuntime(deps: {
  config: WorkerConfig;
  /** Creates the worker's one Prisma client; called once, at warm-up (its query compiler loads at the first ctx.db query). */
  createPrisma: () => Db;
  dbChannel: DbChannel;
  registry: Promise<AgentRegistry>;
  log: Logger;
  /** Walls the host guards refused (workers/worker/host-guards.ts): emptied at each run's start, reported at its end. */
  refused: Set<string>;
  handles: HandleTracker;
  /**
   * Descriptors from `fs.open`/`fs.openSync` the thread holds (fd-guards.ts). Node closes them when the thread
   * ends, never before: a run that leaves some open retires its worker, or they would count against the cell's
   * limit for every later run.
   */
  openDescriptors: () => number;
  /** Sockets the thread holds now, by the descriptor wall's count (fd-guards.ts). */
  openSockets: () => number;
  /** This thread's nice value when it started (null: unknown). */
  bornNice?: number | null;
}) {
  const { config, dbChannel, log, handles } = deps;
  const factory = createAgentFactory();
  const settings = deepFreeze(config.agentSettings);
  // A registry that failed to load is reported by describe(); mark it handled so the worker survives.
  deps.registry.catch(() => undefined);
  const counters = { activeContexts: 0, liveAgentInstances: 0 };
  // The front's CPU governor may have had this worker lowered to nice 19 during a run. When the run ends the
  // worker takes its priority back; where the OS refuses (no CAP_SYS_NICE: the Docker image's user, a cell
  // with an OS user of its own) it retires instead of serving the next run at nice 19. Its normal is what it was
  // born with (read first thing, run-entry.ts): the governor lowers no thread in its first seconds
  // (server/cells/cpu-governor.ts), so that cannot be a demotion already, as what it read here once warm could be.
  const niceAtStart = deps.bornNice ?? niceNow() ?? 0;
  const priorityAfterRun = (): { demoted: boolean; restored: boolean } => {
    const nice = niceNow();
    if (nice === null || nice < DEMOTED_NICE || nice <= niceAtStart) return { demoted: false, restored: true };
    try {
      setPriority(0, niceAtStart);
      return { demoted: true, restored: true };
    } catch {
      return { demoted: true, restored: false };
    }
  };
  // The worker's Prisma client (no connection of its own: its statements go to the front's gate) is open
  // once it has loaded its query compiler: while warming up if eager, or at a run's first ctx.db query.
  let dbOpen = false;
  const stats = (): WorkerStats => ({ workerId, ...counters, dbClients: dbOpen ? 1 : 0 });
  let runsServed = 0;
  // The clean state every run must start from and leave behind; taken once the worker is warm (agents
  // loaded, and with WORKER_DB_WARMUP=eager the database client), so lazy initialisation is not mistaken for a leak.
  let baseline: Promise<GlobalsSnapshot> | null = null;
  // The clean state once taken; Prisma's loading mid-run is taken into it (prisma() below).
  let clean: GlobalsSnapshot | null = null;
  // The worker's Prisma client, created once: at warm-up (cleanBaseline), before the clean state is taken.
  let client: Db | null = null;
  const prisma = (): Db => {
    if (client) return client;
    // Prisma defines globals of its own as it loads (DEBUG, NODE_CLIENT, PRISMA_WASM_PANIC_REGISTRY…). It loads
    // synchronously here, with no agent code in between: what it changes becomes part of the clean state, and
    // whatever the run changed before still shows.
    const before = clean ? snapshotGlobals() : null;
    client = deps.createPrisma();
    if (clean && before) clean = adoptChanges(clean, before, snapshotGlobals());
    return client;
  };
  const cleanBaseline = () =>
    (baseline ??= (async () => {
      await deps.registry.catch(() => undefined);
      // Prisma loads its WebAssembly query compiler at the first query: the cell's, instantiated (~25 MiB and
      // ~50 ms per worker; db-forwarding.ts). Most agents never touch ctx.db, so by default a worker pays it at its first ctx.db query
      // (that first load changes no global and opens no handle: not a leak). eager: pay it here, with a
      // ctx.db query shape compiled while no run is attached: Prisma compiles the statement (loading the
      // compiler), then the adapter refuses to send it (DB_NO_RUN), so nothing reaches the front.
      // The refusal proves the statement was compiled and reached the adapter: the client is loaded.
      if (config.workerDbWarmup === 'eager') await threadsGet(prisma(), '', '').catch((err: { code?: unknown }) => void (dbOpen = err?.code === 'DB_NO_RUN'));
      if (isConfigured(config.agentSettings.llm)) preloadLlm();
      // The client itself (not its query compiler) is created at warm-up after all: created at a run's first ctx.db
      // query it saved ~2.4 MiB per idle worker, but on a starved machine it added seconds to that run, inside its
      // deadline (CI beside two CPU burners: the llm agent's first runs timed out). prisma() still adopts what a
      // later creation would change, should a path ever create it mid-run.
      prisma();
      settleLazyGlobals();
      clean = snapshotGlobals();
      return clean;
    })());

  async function describe(): Promise<DescribeReply> {
    const registry = await deps.registry;
    await cleanBaseline();
    return { agents: registry.list(), stats: stats() };
  }

  // THREAD_REUSE=same_user: the one user this worker serves, set by its first run.
  let servedUser: string | null = null;
  // A run is executing (its task is not answered yet; a refused or recycled run's never is).
  let executing = false;
  // A run task came in while another executed: code of a run called this handler itself (handle()). No run is
  // taken here any more.
  let tampered = false;
  // The descriptor wall's count of sockets when the last run's leaks were counted (none yet: null).
  let socketsAtLastEnd: number | null = null;

  async function execute(run: RunAssignment, port: MessagePort, startRecorded: Int32Array, eventsTaken: Int32Array, traceId?: string): Promise<RunOutcome> {
    const post = (msg: WorkerToCell) => apply(postMessage, port, [msg]);
    if (config.workerReuse === 'same_user' && servedUser !== null && servedUser !== run.userId) {
      // Before any agent code: what earlier runs left in modules and closures must never meet another user.
      post({ type: 'refused', reason: 'user_switch' });
      return new Promise<never>(() => undefined);
    }
    // Lowered while no run of its own was hungry (warming up beside a hungry run: the governor sees OS threads,
    // not runs) and unable to take its priority back: no run starts here at nice 19, and none is blamed for it.
    if (!priorityAfterRun().restored) {
      post({ type: 'refused', reason: 'priority_not_restored' });
      return new Promise<never>(() => undefined);
    }
    // Code of the last run acting after it ended (a timer firing or armed between runs, one rescheduled): it would
    // act in this run too. Retired like a leak found at that run's end.
    const leftBehind = handles.leftBehind();
    if (leftBehind) {
      log.warn({ left_behind: leftBehind }, "code of this worker's last run acted after it ended; retiring the worker");
      post({ type: 'refused', reason: 'leaked_resources' });
      return new Promise<never>(() => undefined);
    }
    servedUser = run.userId;
    await cleanBaseline();
    const contaminated = changedGlobals(clean!).length > 0;
    const startedAt = Date.now();
    deps.refused.clear();
    post({ type: 'started', workerId, startedAt });
    // No agent code (not even its constructor) before the cell has written the start to the front: if the cell
    // dies first, the front knows this run never ran and sends it elsewhere, unsuspected (server/runs/cell-death.ts).
    waitUntilSet(startRecorded);
    // `cell` and `worker` are already bound by the worker's logger (run-entry.ts); repeating them here would
    // print each key twice.
    const runLog = log.child({ run_id: run.runId, user_id: run.userId, thread_id: run.threadId, agent: run.agentName, attempt: run.attempt, ...(traceId ? { trace_id: traceId } : {}) });

    const controller = new AbortController();
    const stop = (reason: StopReason | 'limit') => {
      if (!controller.signal.aborted) controller.abort(new StopSignal(reason));
    };
    // The run's model requests go to the cell's broker over this port; the key never enters the worker.
    const broker = createBrokerLink(port);
    port.on('message', (msg: CellToWorker) => {
      if (msg.type === 'abort') stop(msg.reason);
      else if (msg.type === 'db_answer') dbChannel.answer(msg);
      else if (msg.type === 'query_compiler') dbChannel.answerQueryCompiler(msg.module);
      else broker.handle(msg);
    });
    // The worker's Prisma client sends its statements over this run's port, until the context is released.
    dbChannel.attach(port);
    // Counted once the run's own port is listening, so only what the agent opens shows up as a leak.
    const resourcesBefore = activeResources();
    // ... and every handle the run opens from here, unref'd ones included.
    handles.start();
    // The wall's count too: the tracker learns of a handle's end from async_hooks' destroy, which agent code can
    // emit for any id (helper-73 hid its sockets from the tracker so), and it does not see the resolver's. Counted
    // from the last run's end, not this one's start: a callback of that run (a short timer the tracker lets go) can
    // open sockets between the runs (helper-76: 50, carried through every later run with clean reports).
    const socketsBefore = socketsAtLastEnd ?? deps.openSockets();
    // Rejects when the run is stopped, so a stop wins even against an agent that never settles.
    const stopped = new Promise<never>((_, reject) =>
      controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true }),
    );
    stopped.catch(() => undefined);

    let agent: Agent | null = null;
    let handle: ExecutionContextHandle | null = null;
    let outcome: RunOutcome;
    let agentSettled = true;
    const elapsed = () => Date.now() - startedAt;
    try {
      const entry = (await deps.registry).get(run.agentName);
      if (!entry) throw Object.assign(new Error(`agent "${run.agentName}" is not registered in this cell`), { code: 'AGENT_ERROR' });
      handle = createExecutionContext({ run, port, eventsTaken, signal: controller.signal, prisma, limits: config.limits, log: runLog, settings, modelFetch: broker.fetch, onViolation: () => stop('limit'), onDbQuery: () => (dbOpen = true) });
      counters.activeContexts++;
      agent = factory.create(entry);
      counters.liveAgentInstances++;
      post({ type: 'stats', stats: stats() });
      agentSettled = false;
      const execution = Promise.resolve().then(() => agent!.execute(handle!.ctx));
      execution.then(
        () => (agentSettled = true),
        () => (agentSettled = true),
      );
      const result = await Promise.race([execution, stopped]);
      outcome = handle.emitter.violation ? failedOutcome(handle.emitter.violation, elapsed()) : completedOutcome(result, config.limits, elapsed());
    } catch (err) {
      const reason = controller.signal.aborted ? (controller.signal.reason as StopSignal).reason : null;
      if (reason === 'limit' || handle?.emitter.violation) outcome = failedOutcome(handle?.emitter.violation ?? err, elapsed());
      else if (reason) outcome = stoppedOutcome(reason, elapsed());
      else outcome = failedOutcome(err, elapsed());
    }

    // Cleanup always runs, bounded so a stuck cleanup cannot hold the worker.
    const cleanupStarted = Date.now();
    if (agent && typeof agent.cleanup === 'function') {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          Promise.resolve().then(() => agent!.cleanup!()),
          new Promise((resolve) => handles.exclude((timer = setTimeout(resolve, CLEANUP_TIMEOUT_MS)))),
        ]);
      } catch (err) {
        runLog.warn({ err: messageOf(err) }, 'agent cleanup threw');
      } finally {
        clearTimeout(timer);
      }
    }
    broker.close();
    if (handle) {
      handle.release();
      // Events still waiting for the cell to read those before them go out before anything else of the run's end.
      await handle.emitter.drained();
      counters.activeContexts--;
    }
    dbChannel.release();
    if (agent) counters.liveAgentInstances--;
    agent = null;
    handle = null;
    // Let callbacks the run scheduled for "right now" (closing sockets, finished reads) settle before counting.
    await new Promise((resolve) => setImmediate(resolve));

    const openFiles = (): Record<string, number> => {
      const file = deps.openDescriptors();
      const socket = deps.openSockets() - socketsBefore;
      return { ...(file > 0 ? { file } : {}), ...(socket > 0 ? { socket } : {}) };
    };
    const countLeaks = () => mergeLeaks(mergeLeaks(leakedResources(resourcesBefore, activeResources()), handles.open()), openFiles());
    let leaks = countLeaks();
    // An aborted request's socket may still be closing: look again before calling it a leak. Only a run that
    // seems to leak pays for the pauses.
    for (const ms of LEAK_RECHECKS_MS) {
      if (Object.keys(leaks).length === 0) break;
      await new Promise((resolve) => handles.exclude(setTimeout(resolve, ms)));
      await new Promise((resolve) => setImmediate(resolve));
      leaks = countLeaks();
    }
    // Watched on until the next run's start (leftBehind() above): a timer the count let go may still fire once.
    handles.between();
    socketsAtLastEnd = deps.openSockets();
    const globals = changedGlobals(clean!);
    const priority = priorityAfterRun();
    runsServed++;
    const recycled = recycleReason({ contaminated, globals, leaks, agentSettled, priorityRestored: priority.restored, runsServed, maxRunsPerWorker: config.maxRunsPerWorker });
    const report: RunReport = { leaks, globals, contaminated, recycled, cleanupMs: Date.now() - cleanupStarted, ...(priority.demoted ? { cpuDemoted: true } : {}), ...(deps.refused.size ? { refused: [...deps.refused] } : {}) };
    if (recycled && recycled !== 'max_runs') runLog.warn({ leaks, globals, recycled }, 'run left state behind; recycling its worker thread');
    // The seal is read only now, after the outcome and report are built (their building may run agent getters).
    post({ type: 'done', outcome, stats: stats(), report, seal: [atomicsLoad(startRecorded, RUN_SEAL_AT), atomicsLoad(startRecorded, RUN_SEAL_AT + 1)] });
    if (recycled) {
      // Never return: the cell terminates this worker on `done`, so no later run can see what this one left.
      await new Promise<never>(() => undefined);
    }
    // The run is over for the front; the worker takes no other run until the short timers the count let go have
    // fired (at most about a second): each fires between runs, where the watch sees what it does, not inside the
    // next run (helper-79).
    await handles.settled();
    port.close();
    return outcome;
  }

  return {
    /**
     * Warms up (agents, clean baseline, the database client if eager); resolves when done, never rejects (a
     * registry that failed to load is reported by describe()).
     */
    warm(): Promise<void> {
      return cleanBaseline().then(
        () => undefined,
        () => undefined,
      );
    },
    handle(task: WorkerTask): Promise<RunOutcome | DescribeReply> {
      if (task.kind === 'describe') return describe();
      if (task.kind === 'run') {
        // One run at a time (Piscina gives a worker one task at a time): a run task while one executes is not
        // Piscina's but code of a run, which found this handler (run-entry's export, in require.cache), or Piscina's
        // after such code made the worker busy for good while Piscina saw it idle (a forged task refused, as one of
        // another user's, never ends: helper-80). Refused before it touches anything the runs share (the walls hit,
        // the handle tracker, the database channel), on the task's own port, as is every run task after it: a real
        // one is then run elsewhere and this worker retired (it was rejected, and the cell failed it WORKER_CRASHED
        // without retiring the worker: every other user's run sent here failed so).
        if (executing || tampered) {
          tampered = true;
          try {
            apply(postMessage, task.port, [{ type: 'refused', reason: 'tampered' } satisfies WorkerToCell]);
          } catch {
            // Not a port: a forged task, nobody to tell.
          }
          return new Promise<never>(() => undefined);
        }
        executing = true;
        return execute(task.run, task.port, task.startRecorded, task.eventsTaken, task.traceId).finally(() => (executing = false));
      }
      return Promise.reject(new Error(`unknown worker task ${JSON.stringify((task as { kind?: unknown }).kind)}`));
    },
  };
}

/** This worker's nice value (Linux: getpriority on the calling OS thread), or null where it cannot be read. */
function niceNow(): number | null {
  try {
    return getPriority(0);
  } catch {
    return null;
  }
}

/**
 * Blocks this thread until the cell sets `flag` (it has just written the run's start, so this is short). A
 * stop meanwhile is read from the run's port afterwards; terminating the thread ends the wait too.
 */
function waitUntilSet(flag: Int32Array): void {
  while (atomicsLoad(flag, 0) === 0) atomicsWait(flag, 0, 0, 1000);
}
