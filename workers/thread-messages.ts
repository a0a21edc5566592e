/** Cell ↔ worker-thread messages: the Piscina task, and what flows over each run's own MessagePort. */
import type { MessagePort } from 'node:worker_threads';
import type { AgentInfo, AgentSettings, RunAssignment, RunLimits, RunOutcome, RunReport } from '../server/protocol/cell-messages.js';
import type { AgentEvent } from '../server/protocol/events.js';
import type { DbAnswer, DbQueryKind, ForwardedSqlQuery } from '../server/protocol/db-messages.js';

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
}

export type ThreadTask = { kind: 'run'; run: RunAssignment; port: MessagePort } | { kind: 'describe' };

export type StopReason = 'cancelled' | 'timeout';

export type CellToThread =
  | { type: 'abort'; reason: StopReason }
  /** The front's answer to the run's db query `id` (workers/thread/db-forwarding.ts). */
  | ({ type: 'db_answer'; id: number } & DbAnswer);

export interface ThreadStats {
  workerId: number;
  activeContexts: number;
  liveAgentInstances: number;
  dbClients: number;
}

export type ThreadToCell =
  | { type: 'started'; workerId: number; startedAt: number; /** OS thread id (Linux), for the cell's CPU governor. */ tid: number | null }
  | { type: 'event'; event: AgentEvent }
  /**
   * A statement of the thread's Prisma client, for the front's gate (server/store/thread-query-gate.ts). The
   * cell tags it with the run that owns this port: the thread cannot name another run.
   */
  | { type: 'db_query'; id: number; kind: DbQueryKind; query: ForwardedSqlQuery }
  /** Sent once the run's context and agent instance exist, so the cell counts them while the run executes. */
  | { type: 'stats'; stats: ThreadStats }
  /** `report.recycled` set: the thread will not return; the cell terminates it (Piscina replaces it). */
  | { type: 'done'; outcome: RunOutcome; stats: ThreadStats; report: RunReport };

export type DescribeReply = { agents: AgentInfo[]; stats: ThreadStats };
