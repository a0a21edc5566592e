/**
 * Runs holding a worker (or on their way to one), counted per user and per conversation. A run may start
 * when its user is under USER_MAX_CONCURRENT_RUNS and no other run of its conversation is active, so a
 * conversation's messages are answered one at a time, in order.
 */

/** What occupancy reads of a run. */
export interface Occupant {
  readonly userId: string;
  readonly threadId: string;
}

export function createOccupancy(settings: { userMaxConcurrentRuns: number }) {
  const byUser = new Map<string, number>();
  const byThread = new Map<string, number>();
  const holding = new Set<Occupant>();

  const bump = (map: Map<string, number>, key: string, by: number) => {
    const n = (map.get(key) ?? 0) + by;
    if (n > 0) map.set(key, n);
    else map.delete(key);
  };

  return {
    /** Counts the run (once, however often it is called). */
    occupy(run: Occupant): void {
      if (holding.has(run)) return;
      holding.add(run);
      bump(byUser, run.userId, 1);
      bump(byThread, run.threadId, 1);
    },
    /** Stops counting the run (a run not counted is left alone). */
    vacate(run: Occupant): void {
      if (!holding.delete(run)) return;
      bump(byUser, run.userId, -1);
      bump(byThread, run.threadId, -1);
    },
    eligible(run: Occupant): boolean {
      return (byUser.get(run.userId) ?? 0) < settings.userMaxConcurrentRuns && !byThread.has(run.threadId);
    },
    activeFor(userId: string): number {
      return byUser.get(userId) ?? 0;
    },
  };
}

export type Occupancy = ReturnType<typeof createOccupancy>;
