/**
 * Whether a worker may serve another run after this one, and if not why: the first rule that holds, in the
 * order below (what the run left behind first, then the worker's own limits).
 */
import type { RecycleReason } from '../../protocol/cell-messages.js';

/** What the worker found around one run (worker-runtime.ts measures it after the run's cleanup). */
export interface AfterRun {
  /** The worker was not in its clean state when the run started (should never happen). */
  contaminated: boolean;
  /** Globals or built-in prototype members the run added, removed or replaced. */
  globals: readonly string[];
  /** Resources the run opened and did not close, by kind. */
  leaks: Readonly<Record<string, number>>;
  /** The agent's execute() settled (false: it was stopped and kept going). */
  agentSettled: boolean;
  /** The worker took back its OS priority after the CPU governor lowered it. */
  priorityRestored: boolean;
  /** Runs this worker has served, this one included. */
  runsServed: number;
  /** MAX_RUNS_PER_WORKER (0: unlimited). */
  maxRunsPerWorker: number;
}

const RULES: readonly (readonly [RecycleReason, (r: AfterRun) => boolean])[] = [
  ['contaminated', (r) => r.contaminated],
  ['globals_changed', (r) => r.globals.length > 0],
  ['leaked_resources', (r) => Object.keys(r.leaks).length > 0],
  ['unsettled_after_stop', (r) => !r.agentSettled],
  ['priority_not_restored', (r) => !r.priorityRestored],
  ['max_runs', (r) => r.maxRunsPerWorker > 0 && r.runsServed >= r.maxRunsPerWorker],
];

/** The reason to retire the worker after this run, or null when it may serve the next one. */
export function recycleReason(after: AfterRun): RecycleReason | null {
  return RULES.find(([, holds]) => holds(after))?.[0] ?? null;
}
