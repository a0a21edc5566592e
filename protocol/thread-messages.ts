/** Cell ↔ worker-thread messages: the Piscina task, and what flows over each run's own MessagePort. */
import type { MessagePort } from 'node:worker_threads';
import type { AgentInfo, AgentSettings, RunAssignment, RunLimits, RunOutcome, RunReport } from './cell-messages.js';
import type { AgentEvent } from './events.js';
import type { DbAnswer, DbQueryKind, ForwardedSqlQuery } from './db-messages.js';

/** workerData of every thread in a cell's pool. */
export interface ThreadConfig {
  cellId: string;
  builtinAgentsDir: string;
  agentsDir: string | null;
  enableChaosAgents: boolean;
  limits: RunLimits;
  /** 0 = unlimited */
  maxRunsPerWorker: number;
  /** Provider of the thread's Prisma client (its adapter forwards to the front, whichever the database). */
  dbProvider: 'sqlite' | 'postgres';
  /** lazy: Prisma's query compiler (~26 MiB per thread) loads at the thread's first ctx.db query. */
  dbWarmup: 'lazy' | 'eager';
  logLevel: string;
  agentSettings: AgentSettings;
  /** SES lockdown() + harden() of host prototypes before any agent loads (THREAD_LOCKDOWN). */
  lockdown: boolean;
  /** same_user: the thread refuses a run of any user but the first it served (THREAD_REUSE). */
  reuse: 'same_user' | 'any';
}

export type ThreadTask = { kind: 'run'; run: RunAssignment; port: MessagePort } | { kind: 'describe' };

export type StopReason = 'cancelled' | 'timeout';

/**
 * A model request a thread asks its cell to send (workers/llm/broker-fetch.ts → workers/cell/model-broker.ts).
 * The thread never holds the model's key: the cell checks the request and adds the key itself.
 */
export interface ModelRequest {
  type: 'model_request';
  /** Chosen by the thread, unique per run. */
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

export type CellToThread =
  | { type: 'abort'; reason: StopReason }
  | ModelReply
  /** The front's answer to the run's db query `id` (workers/thread/db-forwarding.ts). */
  | ({ type: 'db_answer'; id: number } & DbAnswer);

export interface ThreadStats {
  workerId: number;
  activeContexts: number;
  liveAgentInstances: number;
  dbClients: number;
}

export type ThreadToCell =
  | { type: 'started'; workerId: number; startedAt: number }
  | { type: 'event'; event: AgentEvent }
  | ModelRequest
  /** The thread no longer wants the answer to model request `id` (its signal aborted): the cell aborts it. */
  | { type: 'model_abort'; id: number }
  /**
   * A statement of the thread's Prisma client, for the front's gate (server/store/thread-query-gate.ts). The
   * cell tags it with the run that owns this port: the thread cannot name another run.
   */
  | { type: 'db_query'; id: number; kind: DbQueryKind; query: ForwardedSqlQuery }
  /** Sent once the run's context and agent instance exist, so the cell counts them while the run executes. */
  | { type: 'stats'; stats: ThreadStats }
  /**
   * THREAD_REUSE=same_user: the run belongs to another user than the one this thread serves. Sent before any
   * agent code runs; the thread will not return: the cell terminates it and dispatches the run again.
   */
  | { type: 'refused'; reason: 'user_switch' | 'priority_not_restored' }
  /** `report.recycled` set: the thread will not return; the cell terminates it (Piscina replaces it). */
  | { type: 'done'; outcome: RunOutcome; stats: ThreadStats; report: RunReport };

export type DescribeReply = { agents: AgentInfo[]; stats: ThreadStats };
