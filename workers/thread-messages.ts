/** Cell ↔ worker-thread messages: the Piscina task, and what flows over each run's own MessagePort. */
import type { MessagePort } from 'node:worker_threads';
import type { AgentInfo, AgentSettings, RunAssignment, RunLimits, RunOutcome, RunReport } from '../server/protocol/cell-messages.js';
import type { AgentEvent } from '../server/protocol/events.js';

/** workerData of every thread in a cell's pool. */
export interface ThreadConfig {
  cellId: string;
  databaseFile: string;
  builtinAgentsDir: string;
  agentsDir: string | null;
  enableChaosAgents: boolean;
  limits: RunLimits;
  /** 0 = unlimited */
  maxRunsPerWorker: number;
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

export type CellToThread = { type: 'abort'; reason: StopReason };

export interface ThreadStats {
  workerId: number;
  activeContexts: number;
  liveAgentInstances: number;
  dbClients: number;
}

export type ThreadToCell =
  | { type: 'started'; workerId: number; startedAt: number; /** OS thread id (Linux), for the cell's CPU governor. */ tid: number | null }
  | { type: 'event'; event: AgentEvent }
  /** Sent once the run's context and agent instance exist, so the cell counts them while the run executes. */
  | { type: 'stats'; stats: ThreadStats }
  /**
   * THREAD_REUSE=same_user: the run belongs to another user than the one this thread serves. Sent before any
   * agent code runs; the thread will not return: the cell terminates it and dispatches the run again.
   */
  | { type: 'refused'; reason: 'user_switch' }
  /** `report.recycled` set: the thread will not return; the cell terminates it (Piscina replaces it). */
  | { type: 'done'; outcome: RunOutcome; stats: ThreadStats; report: RunReport };

export type DescribeReply = { agents: AgentInfo[]; stats: ThreadStats };
