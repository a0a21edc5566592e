/**
 * Users whose run killed its cell (the culprit of a cell death, named by cell-death.ts), for
 * CELL_KILLER_QUARANTINE_MS after their latest such run. Their runs then run alone in quarantine cells, one at a
 * time (scheduler.ts): a user whose runs keep killing cells (a prompt-injected tool, a poisoned dependency, a user
 * sending the run that does it again and again) costs no other user's run a restart or a collateral failure
 * again, and holds at most one quarantine cell at a time.
 *
 * This node's memory: with several nodes each node learns it from a death of its own. Bounded in size: past
 * MAX_USERS the user named longest ago is forgotten first.
 */

/** Far more users than would kill cells on one node within the window; each entry is a few dozen bytes. */
const MAX_USERS = 10_000;

export function createCellKillers(settings: { cellKillerQuarantineMs: number }, now: () => number = Date.now) {
  /** When each user's quarantine ends, in the order they were last named. */
  const until = new Map<string, number>();

  function has(userId: string): boolean {
    const end = until.get(userId);
    if (end === undefined) return false;
    if (end > now()) return true;
    until.delete(userId);
    return false;
  }

  return {
    /** The user's run killed its cell: its quarantine starts (again) now. */
    named(userId: string): void {
      if (settings.cellKillerQuarantineMs <= 0) return;
      until.delete(userId);
      until.set(userId, now() + settings.cellKillerQuarantineMs);
      if (until.size > MAX_USERS) until.delete(until.keys().next().value!);
    },
    has,
    /** Some user is in quarantine (the scheduler skips looking for their runs otherwise). */
    get any(): boolean {
      for (const userId of until.keys()) if (has(userId)) return true;
      return false;
    },
  };
}

export type CellKillers = ReturnType<typeof createCellKillers>;
