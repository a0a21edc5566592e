/** Cell ↔ worker messages (a worker: one worker thread of a cell's Piscina pool): the Piscina task, and what flows over each run's own MessagePort. */
import type { MessagePort } from 'node:worker_threads';
import type { AgentInfo, CellConfig, RunAssignment, RunOutcome, RunReport } from './cell-messages.js';
import type { AgentEvent } from './events.js';
import type { DbAnswer, DbQueryKind, ForwardedSqlQuery } from './db-messages.js';
import type { Assert, SameShape } from './pick.js';
import type { StopReason } from './stop-errors.js';

/** The settings of its cell's CellConfig every worker is given (workerData: workers/cell/cell-runtime.ts picks them). */
export const WORKER_SETTINGS = [
  'cellId',
  'dbProvider',
  'agentsDir',
  'compiledAgents',
  'enableChaosAgents',
  'limits',
  'maxRunsPerWorker',
  'workerDbWarmup',
  'workerLockdown',
  'workerReuse',
  'agentEgress',
  'logLevel',
  'agentSettings',
] as const satisfies readonly (keyof CellConfig)[];

/**
 * workerData of every worker in a cell's pool: its share of the cell's settings, by the same names, and where
 * the built-in agents are. Never the model key (llmApiKey).
 */
export interface WorkerConfig {
  readonly cellId: CellConfig['cellId'];
  readonly dbProvider: CellConfig['dbProvider'];
  readonly agentsDir: CellConfig['agentsDir'];
  readonly compiledAgents: CellConfig['compiledAgents'];
  readonly enableChaosAgents: CellConfig['enableChaosAgents'];
  readonly limits: CellConfig['limits'];
  readonly maxRunsPerWorker: CellConfig['maxRunsPerWorker'];
  readonly workerDbWarmup: CellConfig['workerDbWarmup'];
  readonly workerLockdown: CellConfig['workerLockdown'];
  readonly workerReuse: CellConfig['workerReuse'];
  readonly agentEgress: CellConfig['agentEgress'];
  readonly logLevel: CellConfig['logLevel'];
  readonly agentSettings: CellConfig['agentSettings'];
  readonly builtinAgentsDir: string;
}

/**
 * What a cell gives each worker: its configuration, the cell's warm-up lock (workers/worker/warm-up-turn.ts: two
 * Int32s over a SharedArrayBuffer, the lock and the first warm worker), and with WORKER_DB_WARMUP=eager Prisma's query compiler as the cell compiled
 * it (prisma/query-compiler.ts; lazy workers ask for it over a run's port). The worker takes both out before
 * any other code runs.
 */
export interface WorkerData extends WorkerConfig {
  readonly warmUpLock: Int32Array;
  readonly queryCompiler: WebAssembly.Module | null;
}

/** Checked by the compiler: WORKER_SETTINGS names exactly the fields of WorkerConfig that come from the cell's config. */
export type WorkerSettingsMatch = Assert<SameShape<Pick<CellConfig, (typeof WORKER_SETTINGS)[number]>, Omit<WorkerConfig, 'builtinAgentsDir'>>>;

/**
 * traceId: the run is traced (the front's run message had a traceparent); the worker names the trace on the
 * run's log lines, ctx.log's included. The trace id only: the thread makes no span and holds no exporter.
 */
/**
 * `startRecorded`: an Int32 in a SharedArrayBuffer of this run's own, set to 1 by the cell once the run's
 * `run_started` is written to the front's channel. The worker runs no agent code before: a cell that dies first
 * leaves a run the front knows never ran any (server/runs/cell-death.ts). Its next two Int32s are the run's seal
 * (random, from the cell): the worker runtime reads them only to sign its `done` (RUN_SEAL_AT).
 */
/** Where the seal sits in `startRecorded`: two Int32s after the start flag. */
export const RUN_SEAL_AT = 1;
export const RUN_SHARED_INT32S = 3;

/**
 * Why a worker refuses a run before any agent code runs, and retires: it serves another user (THREAD_REUSE=same_user);
 * it was lowered in priority and cannot take it back; code of its last run acted after that run ended
 * (leaked_resources: handle-tracker.ts's leftBehind()); code of a run called the worker's task handler itself
 * (tampered: worker-runtime.ts).
 */
export const REFUSAL_REASONS = ['user_switch', 'priority_not_restored', 'leaked_resources', 'tampered'] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/**
 * `eventsTaken`: an Int32 in a SharedArrayBuffer of this run's own (not the seal's), which the cell adds 1 to for each
 * `event` message it has read off the run's port. The worker posts at most EVENTS_IN_FLIGHT events its cell has not
 * read yet, and keeps the rest until it has (workers/worker/run-emitter.ts).
 */
export type WorkerTask = { kind: 'run'; run: RunAssignment; port: MessagePort; startRecorded: Int32Array; eventsTaken: Int32Array; traceId?: string } | { kind: 'describe' };

/**
 * Why a window: Node hands a port's queued messages to its listener all at once, and the cell checks each event
 * (its JSON, up to 64 KiB) as it reads it, so another run's message in the same cell waited behind everything a
 * flooding run had posted (hundreds of events: p99 ~0.4 s, README, threat model). With the window, at most this many
 * per run.
 */
export const EVENTS_IN_FLIGHT = 8;

export type { StopReason } from './stop-errors.js';

/**
 * A model request a worker asks its cell to send (workers/llm/broker-fetch.ts → workers/cell/model-broker.ts).
 * The worker never holds the model's key: the cell checks the request and adds the key itself.
 */
export interface ModelRequest {
  type: 'model_request';
  /** Chosen by the worker, unique per run. */
  id: number;
  url: string;
  method: string;
  headers: [string, string][];
  body: Uint8Array | null;
}

/** The cell's answer to one ModelRequest: `model_response` (or `model_error`), then chunks, then end or error. */
export type ModelReply =
  | { type: 'model_response'; id: number; status: number; statusText: string; headers: [string, string][] }
  | { type: 'model_chunk'; id: number; chunk: Uint8Array }
  | { type: 'model_end'; id: number }
  | { type: 'model_error'; id: number; error: { code: string; message: string } };

export type CellToWorker =
  | { type: 'abort'; reason: StopReason }
  | ModelReply
  /** The front's answer to the run's db query `id` (workers/worker/db-forwarding.ts). */
  | ({ type: 'db_answer'; id: number } & DbAnswer)
  /** Prisma's query compiler as the cell compiled it (prisma/query-compiler.ts); null: compile your own. */
  | { type: 'query_compiler'; module: WebAssembly.Module | null };

export interface WorkerStats {
  workerId: number;
  activeContexts: number;
  liveAgentInstances: number;
  dbClients: number;
}

export type WorkerToCell =
  /** The run is about to start: agent code runs once the cell has set the task's `startRecorded`. */
  | { type: 'started'; workerId: number; startedAt: number }
  | { type: 'event'; event: AgentEvent }
  | ModelRequest
  /** The worker no longer wants the answer to model request `id` (its signal aborted): the cell aborts it. */
  | { type: 'model_abort'; id: number }
  /**
   * A statement of the worker's Prisma client, for the front's gate (server/store/worker-query-gate.ts). The
   * cell tags it with the run that owns this port: the worker cannot name another run.
   */
  | { type: 'db_query'; id: number; kind: DbQueryKind; query: ForwardedSqlQuery }
  /** The worker's Prisma client loads its query compiler (its first ctx.db query): the cell's, please. */
  | { type: 'query_compiler' }
  /** Sent once the run's context and agent instance exist, so the cell counts them while the run executes. */
  | { type: 'stats'; stats: WorkerStats }
  /**
   * The worker will not take this run (RefusalReason). Sent before any agent code runs; the worker will not
   * return: the cell terminates it and dispatches the run again.
   */
  | { type: 'refused'; reason: RefusalReason }
  /**
   * `report.recycled` set: the worker will not return; the cell terminates it (Piscina replaces it). `seal`: the
   * run's seal, read from shared memory as the runtime sends it, so code that got hold of the port cannot post a
   * `done` of its own before the runtime's (hiding the walls its run hit, or choosing its outcome).
   */
  | { type: 'done'; outcome: RunOutcome; stats: WorkerStats; report: RunReport; seal: [number, number] };

export type DescribeReply = { agents: AgentInfo[]; stats: WorkerStats };
