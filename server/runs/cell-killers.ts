/**
 * Users whose run killed its cell, for CELL_KILLER_QUARANTINE_MS after their latest such run. Their runs then
 * run alone, one at a time, in the cell killers' quarantine cell (scheduler.ts): a user whose runs keep killing
 * cells (a prompt-injected tool, a poisoned dependency, a user sending the run that does it again and again) costs
 * no other user's run a restart or a collateral failure again, and no suspect of another death waits for it.
 *
 * Two kinds of evidence:
 * - `culprit`: cell-death.ts named the run (alone in its cell, or in a quarantine cell).
 * - `suspect`: a run can tell it is in a quarantine cell (its scratch folder's name, its cell's size) and behave
 *   there, so a death it causes among company is never resolved. Each death that names no culprit is kept with the
 *   users whose runs were its suspects; when the last CELL_KILLER_EVIDENCE such deaths within the window have exactly one user
 *   in common, that user is the one. Two users always in company (a killer beside a busy user) are both spared:
 *   nobody is named on a guess.
 *
 * This node's memory: with several nodes, the node that names a user tells the others (run-service.ts; a message
 * between nodes, so a node that missed it learns only from deaths of its own). Bounded in size: past
 * MAX_USERS the user named longest ago is forgotten first.
 */

/** Far more users than would kill cells on one node within the window; each entry is a few dozen bytes. */
const MAX_USERS = 10_000;
/** Unresolved deaths in a row, all with one user in common, that name that user. */
export const CELL_KILLER_EVIDENCE = 3;

export type KillerEvidence = 'culprit' | 'suspect';

export function createCellKillers(settings: { cellKillerQuarantineMs: number }, now: () => number = Date.now) {
  const windowMs = settings.cellKillerQuarantineMs;
  /** When each user's quarantine ends, in the order they were last named. */
  const until = new Map<string, number>();
  /** The latest deaths that named no culprit (at most CELL_KILLER_EVIDENCE): when, and whose runs were the suspects. */
  let unresolved: { at: number; users: Set<string> }[] = [];

  function has(userId: string): boolean {
    const end = until.get(userId);
    if (end === undefined) return false;
    if (end > now()) return true;
    until.delete(userId);
    return false;
  }

  function named(userId: string): void {
    if (windowMs <= 0) return;
    until.delete(userId);
    until.set(userId, now() + windowMs);
    if (until.size > MAX_USERS) until.delete(until.keys().next().value!);
    // The deaths it was a suspect of are explained.
    unresolved = unresolved.filter((d) => !d.users.has(userId));
  }

  return {
    /** The user's run was named the culprit of a cell death: its quarantine starts (again) now. */
    named,
    /**
     * A cell death named no culprit; these users' runs were its suspects. Returns the user named on this
     * evidence, if any (its quarantine starts now).
     */
    unresolvedDeath(userIds: readonly string[]): string | null {
      if (windowMs <= 0 || userIds.length === 0) return null;
      const at = now();
      unresolved = [...unresolved.filter((d) => at - d.at < windowMs), { at, users: new Set(userIds) }].slice(-CELL_KILLER_EVIDENCE);
      if (unresolved.length < CELL_KILLER_EVIDENCE) return null;
      const common = [...unresolved[0].users].filter((u) => unresolved.every((d) => d.users.has(u)));
      if (common.length !== 1) return null;
      named(common[0]);
      return common[0];
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
