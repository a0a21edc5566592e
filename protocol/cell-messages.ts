/**
 * Front ↔ cell IPC. Both ends import these types; messages are discriminated by a readable `type`.
 * Errors cross as ErrorBody data, never as Error objects.
 */
import type { DbAnswer, DbQueryKind, ForwardedSqlQuery } from './db-messages.js';
import type { ModelOperations } from './model-operations.js';
import type { ErrorBody } from './errors.js';
import type { StopReason } from './stop-errors.js';
import type { AgentInfo } from './views.js';

export type { AgentInfo } from './views.js';
import type { AgentEvent, JsonValue, TerminalStatus } from './events.js';

/** Exit code of a cell ended by its memory watchdog (CELL_MEMORY_MB). */
export const CELL_EXIT_MEMORY = 70;
/** Exit code of a cell whose folder held more than a run's scratch budget beside its runs' folders (workers/cell/scratch-watch.ts). */
export const CELL_EXIT_SCRATCH = 71;
/** Exit code of a cell left without file descriptors long enough that it could not watch its runs' scratch folders. */
export const CELL_EXIT_DESCRIPTORS = 72;

/** The nice value the front's CPU governor (server/cells/cpu-governor.ts) has a cell give a hungry OS thread. */
export const DEMOTED_NICE = 19;

export type { AgentInput } from './agent-input.js';
import type { AgentInput } from './agent-input.js';

/**
 * Burst workers per worker of a cell's capacity: runs executing longer than LONG_RUN_MS stop counting against
 * the capacity, up to this many more per worker, and the cell's pool may grow by as much. Idle workers cost
 * ~17 MiB and a demoted CPU hog little CPU, so a few hung runs per worker still leave room for short ones.
 */
export const BURST_WORKERS_PER_WORKER = 3;

/** The most worker threads a cell's pool may hold: its capacity, burst workers for long runs, and the warm spares. */
export const maxWorkersPerCell = (config: { readonly workersPerCell: number; readonly warmSpareWorkers: number }) => config.workersPerCell * (1 + BURST_WORKERS_PER_WORKER) + config.warmSpareWorkers;

/** Everything a cell needs to execute one run: the seed of its immutable execution context. */
export interface RunAssignment {
  runId: string;
  userId: string;
  threadId: string;
  requestId: string;
  agentName: string;
  input: AgentInput;
  attempt: number;
  /** The run's own scratch folder (ctx.scratchDir), made by the front for this attempt and removed after it. */
  scratchDir: string;
}

/**
 * The settings of the front's Config every cell is handed at init, by the Config's own names
 * (server/config-views.ts picks them, and the compiler checks both lists name the same fields of the same
 * types). A new cell setting is a Config field (server/config.ts) declared here and named there. Cells and
 * workers never read the environment. llmApiKey (LLM_API_KEY) stays in the cell's main thread:
 * workers/cell/model-broker.ts adds it to the model requests its workers send; it is never put in workerData,
 * WorkerConfig, ctx.settings or a worker message.
 */
export interface CellSettings {
  /** AGENTS_DIR, resolved (null: the built-in agents only). */
  readonly agentsDir: string | null;
  readonly enableChaosAgents: boolean;
  /** Workers (worker threads) per serving cell: its capacity (THREADS_PER_CELL). */
  readonly workersPerCell: number;
  readonly runTimeoutMs: number;
  readonly runMemoryMb: number;
  /** Whole-cell memory limit (RSS, off-heap included) enforced by the cell's watchdog. */
  readonly cellMemoryMb: number;
  /** 0 = unlimited; 1 = a brand-new worker for every run. */
  readonly maxRunsPerWorker: number;
  readonly workerDbWarmup: 'lazy' | 'eager';
  readonly workerLockdown: boolean;
  readonly workerReuse: 'same_user' | 'any';
  readonly agentEgress: AgentEgress;
  readonly warmSpareWorkers: number;
  readonly cancelGraceMs: number;
  readonly limits: Readonly<RunLimits>;
  readonly logLevel: string;
  readonly agentSettings: AgentSettings;
  readonly llmApiKey: string | null;
  /** LLM_OPERATIONS: what the cell's model broker forwards (protocol/model-operations.ts). */
  readonly llmOperations: ModelOperations;
}

/** The databases whose Prisma client a worker can hold. */
export type DbProvider = 'sqlite' | 'postgres';

/** What one cell is told at init: its share of the front's Config, and what the supervisor sets per cell. */
export interface CellConfig extends CellSettings {
  readonly cellId: string;
  /** The cell's own folder: its runs' scratch folders are made in it (its scratch watch reads it). */
  readonly scratchDir: string;
  /**
   * The database's Prisma provider (driver adapters' names: `postgres`, not `postgresql`): workers' Prisma
   * clients compile for it (cells and workers never open the database; their statements go to the front's
   * gate). Each has its generated client (prisma/generated/<kind>/, picked in workers/worker/db-forwarding.ts).
   */
  readonly dbProvider: DbProvider;
  /** The quarantine cell runs suspects one at a time (its workersPerCell is 1). */
  readonly quarantine: boolean;
  /** AGENTS_DIR's TypeScript agents, compiled by the front at start-up (server/agents/compile-agents.ts). */
  readonly compiledAgents: readonly CompiledAgent[];
}

/** A TypeScript agent of AGENTS_DIR and the JavaScript module the front compiled it to (read-only to cells). */
export interface CompiledAgent {
  /** The .ts file in AGENTS_DIR (its base name is the agent's default name; errors name it). */
  readonly source: string;
  /** The compiled ES module in the front's agent cache. */
  readonly module: string;
}

/** Operator settings agents may read (ctx.settings). Never a credential: agent code can read all of it. */
export interface AgentSettings {
  llm: {
    baseUrl: string | null;
    model: string | null;
    maxContextMessages: number;
    toolTimeoutMs: number;
  };
}

/**
 * Where agent code may connect (AGENT_EGRESS, AGENT_EGRESS_ALLOW; workers/worker/egress-guards.ts): public
 * addresses only, none, or anywhere; `allow` adds subnets (CIDRs, validated by the front) to the first two.
 */
export interface AgentEgress {
  readonly mode: 'public' | 'none' | 'any';
  readonly allow: readonly string[];
}

export interface RunLimits {
  maxEventsPerRun: number;
  maxEventBytes: number;
  /** The payload bytes of all of a run's events together (MAX_RUN_EVENT_BYTES). */
  maxRunEventBytes: number;
  maxResultBytes: number;
  /** What the run's scratch folder may hold, in bytes of disk and in names (0: unbounded; workers/cell/scratch-watch.ts). */
  scratchBytes: number;
  scratchEntries: number;
  /**
   * Files a worker's runs may hold open at once: descriptors from `fs.open`/`fs.openSync` and FileHandles from
   * `fs.promises.open` (0: unbounded; workers/worker/fd-guards.ts). They are the whole cell's.
   */
  openFiles: number;
  /**
   * What a worker thread prints (console, process.stdout and stderr) and, apart, what a run logs through ctx.log:
   * each may reach the log at this many bytes a second, after a burst of LOG_BURST_SECONDS of it; the rest is dropped
   * and counted (0: unbounded; workers/cell/print-budget.ts, workers/worker/execution-context.ts).
   */
  logBytesPerSecond: number;
}

/** How many seconds of RunLimits.logBytesPerSecond a thread or a run may write at once. */
export const LOG_BURST_SECONDS = 16;


export type RunOutcome =
  | { status: 'completed'; result: JsonValue; executionTimeMs: number }
  | { status: Exclude<TerminalStatus, 'completed'>; error: ErrorBody; executionTimeMs: number };

/** Why a worker was replaced after a run instead of serving the next one (every one is a metric label from start-up). */
export const RECYCLE_REASONS = ['leaked_resources', 'globals_changed', 'max_runs', 'unsettled_after_stop', 'contaminated', 'priority_not_restored', 'user_switch', 'invalid_message', 'tampered'] as const;
export type RecycleReason = (typeof RECYCLE_REASONS)[number];

/**
 * The walls a worker's guards report in a run's `refused` (workers/worker/host-guards.ts, fd-guards.ts,
 * egress-guards.ts). The cell adds `port` (a message on the run's port it refused: workers/cell/run-port-check.ts)
 * and `model:<code>`, the front `db:<reason>`.
 */
export const WORKER_WALLS = ['signal', 'priority', 'worker', 'module_hooks', 'v8', 'sqlite', 'fd', 'open_files', 'egress', 'broadcast_channel'] as const;
export type WorkerWall = (typeof WORKER_WALLS)[number];

/** The kinds of resource a run can leave open (each is a label of atoll_leaked_resources_total from start-up). */
export const LEAK_KINDS = ['timer', 'socket', 'file', 'process', 'other'] as const;
export type LeakKind = (typeof LEAK_KINDS)[number];

/** What the worker found around one run: the run's isolation report. */
export interface RunReport {
  /** Resources the run opened and did not close, by kind (timer, socket, file, process, other). */
  leaks: Partial<Record<LeakKind, number>>;
  /** Globals or built-in prototype members the run added, removed or replaced. */
  globals: string[];
  /** The worker's state differed from its clean baseline before this run started (should never happen). */
  contaminated: boolean;
  recycled: RecycleReason | null;
  cleanupMs: number;
  /** The run kept a core busy and its worker was lowered in priority (server/cells/cpu-governor.ts). */
  cpuDemoted?: boolean;
  /** Walls the run's code ran into, once each (e.g. `signal`, `worker`, `model:URL_NOT_ALLOWED`, `db:user_mismatch`). */
  refused?: string[];
}

export interface CellStats {
  workersAlive: number;
  workersBusy: number;
  activeContexts: number;
  liveAgentInstances: number;
  dbClients: number;
  heapUsedBytes: number;
  rssBytes: number;
  externalBytes: number;
}

/**
 * One metric family of a cell's own prom-client registry (`registry.getMetricsAsJSON()`), sent as plain
 * data: the front merges it into its scrape with a `cell` label (server/metrics-merge.ts).
 */
export interface ProcessMetricFamily {
  name: string;
  help: string;
  type: string;
  aggregator: string;
  values: { value: number; labels: Record<string, string | number>; metricName?: string }[];
}

/**
 * One model request of a run, timed by the cell's broker (workers/cell/model-broker.ts) for the run's trace:
 * timings, the HTTP status and how it ended; never a header, a body or an error's text.
 */
export interface ModelCallTiming {
  startedAt: number;
  endedAt: number;
  /** ok: answered and read to the end with a 2xx-3xx status; http_error: another status; failed: no answer; aborted: the run or the worker gave up on it. */
  outcome: 'ok' | 'http_error' | 'failed' | 'aborted';
  httpStatus: number | null;
}

export type FrontToCell =
  | { type: 'init'; config: CellConfig }
  /**
   * traceparent (W3C Trace Context), only when tracing is on: the cell reports the run's model calls (model_call)
   * and hands the run's worker the trace id alone, for the run's log lines (WorkerTask in worker-messages.ts).
   */
  | { type: 'run'; run: RunAssignment; traceparent?: string }
  | { type: 'cancel'; runId: string; reason: StopReason }
  /** The front's CPU governor found this OS thread of the cell hungry: lower it to the lowest priority. */
  | { type: 'demote_os_thread'; tid: number }
  /** The gate's answer to a run's db query; the cell drops it if the run has ended. */
  | ({ type: 'db_answer'; runId: string; queryId: number } & DbAnswer)
  /**
   * Disk held by files with no name under the cell's folder (unlinked while open, or opened nameless), by the first
   * name under it, which the cell cannot see: the front reads /proc (server/cells/nameless-files.ts). Replaces the
   * last report; an empty one once they are gone.
   */
  | { type: 'nameless_files'; byFolder: [name: string, bytes: number][] }
  | { type: 'shutdown' };

export type CellToFront =
  /** First words of a cell, before it starts its pool: the OS threads it has now are its own, not runs' (the CPU governor leaves them alone). */
  | { type: 'booting' }
  | { type: 'ready'; agents: AgentInfo[] }
  | { type: 'init_failed'; error: ErrorBody }
  | { type: 'run_started'; runId: string; workerId: number; startedAt: number }
  | { type: 'run_event'; runId: string; event: AgentEvent }
  /** A statement of the run's worker (its Prisma client's), tagged by the cell with the run owning the port. */
  | { type: 'db_query'; runId: string; queryId: number; kind: DbQueryKind; query: ForwardedSqlQuery }
  | { type: 'run_finished'; runId: string; outcome: RunOutcome; report: RunReport | null }
  /** One model request of a run traced by the front (its run message had a traceparent), once it is over. */
  | { type: 'model_call'; runId: string; call: ModelCallTiming }
  /** A worker retired without finishing a run (a run of another user reached it: user_switch). */
  | { type: 'worker_retired'; reason: RecycleReason }
  /**
   * A worker thread of the cell is gone (Piscina destroyed it): no code of the runs it served can act any more.
   * Until then, code a run left behind (a callback that outlives it) may still act in the cell, even while the
   * worker sits idle (server/cells/user-workers.ts).
   */
  | { type: 'worker_gone'; workerId: number }
  /** The cell's memory watchdog fired; the cell exits right after sending this. */
  | { type: 'memory_exceeded'; rssBytes: number; limitBytes: number }
  | { type: 'stats'; stats: CellStats }
  /** The cell's default process metrics (CPU, memory, event loop, GC, handles), every few seconds. */
  | { type: 'process_metrics'; metrics: ProcessMetricFamily[] };
