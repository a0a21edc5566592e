/**
 * Per-user maxima for the metrics: how much of the node the busiest user holds right now. Exported as a
 * maximum across users, never as a label per user, so the number of series stays fixed however many
 * users there are (the ALERT_ACTIVE_CONTEXTS alert reads the contexts maximum).
 */
import type { RunPhase } from './live-run.js';

export interface UserMaxima {
  /** Accepted runs waiting for a worker (the queue and quarantine). */
  queuedRuns: number;
  /** Runs dispatched to a cell or running there. */
  activeRuns: number;
  /**
   * Execution contexts: a worker builds one when it starts a run and releases it before the run's end is
   * reported, so each run the front knows as `running` holds exactly one.
   */
  activeContexts: number;
}

export function userMaxima(runs: Iterable<{ readonly userId: string; readonly phase: RunPhase }>): UserMaxima {
  const queued = new Map<string, number>();
  const active = new Map<string, number>();
  const contexts = new Map<string, number>();
  const bump = (m: Map<string, number>, user: string) => m.set(user, (m.get(user) ?? 0) + 1);
  for (const run of runs) {
    if (run.phase === 'queued') bump(queued, run.userId);
    if (run.phase === 'dispatched' || run.phase === 'running') bump(active, run.userId);
    if (run.phase === 'running') bump(contexts, run.userId);
  }
  const max = (m: Map<string, number>) => Math.max(0, ...m.values());
  return { queuedRuns: max(queued), activeRuns: max(active), activeContexts: max(contexts) };
}
