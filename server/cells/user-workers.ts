/**
 * Which of a cell's workers serve which user, as the front learns it from the runs it sends there
 * (THREAD_REUSE=same_user: a worker serves one user for its life, workers/cell/user-affinity.ts). A run given to
 * a cell where its user has an idle worker starts at once; anywhere else it takes a fresh worker: the cell's warm
 * spare if one is left, else a thread start (~0.3 s of a core). Under misbehaving runs, which end their workers,
 * sending a user's run to the cell that merely served it lately made its runs wait for thread starts while its
 * worker in the other cell sat idle (README, "Performance").
 *
 * Learned, not told: a run's start names its worker, its end says whether that worker serves again (a report
 * without `recycled`). What the front cannot see, a worker retired idle after Piscina's idleTimeout or handed to
 * another user when the cell's pool was full, only costs a run the fresh worker it would have taken anyway; a
 * worker idle that long is no longer counted (it may have retired), so what the front believes cannot pile up.
 */

/** How long a gone worker's users stay suspects of a cell death (as server/runs/cell-exits.ts's RECENT_KILL_MS). */
export const GONE_SUSPECT_MS = 5000;

/** A cell's idle workers retire after 30 s (Piscina's idleTimeout in workers/cell/cell-runtime.ts). */
export const USER_WORKER_MEMORY_MS = 30_000;

interface UserEntry {
  /** The user's workers here: null while one of its runs executes on it, else since when it has been idle. */
  workers: Map<number, number | null>;
  /** The user's runs sent here that have not started yet: each will take one of its idle workers. */
  waiting: number;
  lastUsed: number;
}

export class UserWorkers {
  private readonly users = new Map<string, UserEntry>();
  private readonly runs = new Map<string, { userId: string; workerId: number | null }>();
  /**
   * Every worker a run of a user started on, with the users whose runs it served, until the cell says it is gone
   * (`worker_gone`): not forgotten after a while like `users`. A run can leave code behind that acts later (an
   * `Atomics.waitAsync` callback holds no handle the isolation check sees), while its worker sits idle for the
   * user's next run: such a user may have done whatever the cell dies of, and is a suspect of its death.
   */
  private readonly served = new Map<number, Set<string>>();
  private recentlyGone: { at: number; users: Set<string> }[] = [];

  constructor(private readonly now: () => number = Date.now) {}

  /** A run of `userId` was sent to the cell. */
  dispatched(runId: string, userId: string): void {
    const entry = this.entry(userId);
    entry.waiting++;
    this.runs.set(runId, { userId, workerId: null });
  }

  /** The run started on `workerId`. */
  started(runId: string, workerId: number): void {
    const run = this.runs.get(runId);
    if (!run || run.workerId !== null) return;
    run.workerId = workerId;
    const entry = this.entry(run.userId);
    entry.waiting = Math.max(0, entry.waiting - 1);
    entry.workers.set(workerId, null);
    const users = this.served.get(workerId) ?? new Set<string>();
    users.add(run.userId);
    this.served.set(workerId, users);
  }

  /**
   * The worker thread is gone: nothing of the runs it served acts any more. Its users stay suspects for
   * GONE_SUSPECT_MS: Piscina reports a worker gone when it starts to end it, and what it did (memory it took) can
   * outlast it for a moment (helper-70).
   */
  gone(workerId: number): void {
    const users = this.served.get(workerId);
    this.served.delete(workerId);
    if (users) this.recentlyGone.push({ at: this.now(), users });
  }

  /** Users whose runs ran on a worker of this cell that is not known gone (or gone a moment ago): each may still act in it. */
  usersWithWorkers(): Set<string> {
    const users = new Set<string>();
    for (const served of this.served.values()) for (const userId of served) users.add(userId);
    const now = this.now();
    this.recentlyGone = this.recentlyGone.filter((g) => now - g.at < GONE_SUSPECT_MS);
    for (const g of this.recentlyGone) for (const userId of g.users) users.add(userId);
    return users;
  }

  /** The run ended; `workerServesAgain`: its worker stays, idle, for its user (false: recycled, killed, crashed). */
  finished(runId: string, workerServesAgain: boolean): void {
    const run = this.runs.get(runId);
    if (!run) return;
    this.runs.delete(runId);
    const entry = this.entry(run.userId);
    if (run.workerId === null) entry.waiting = Math.max(0, entry.waiting - 1);
    else if (workerServesAgain) entry.workers.set(run.workerId, this.now());
    else entry.workers.delete(run.workerId);
  }

  /** Workers of `userId` here that a new run of its would find idle. */
  idleFor(userId: string): number {
    const entry = this.current(userId);
    if (!entry) return 0;
    const now = this.now();
    let idle = 0;
    for (const [workerId, idleSince] of entry.workers) {
      if (idleSince === null) continue;
      if (now - idleSince < USER_WORKER_MEMORY_MS) idle++;
      else entry.workers.delete(workerId);
    }
    return Math.max(0, idle - entry.waiting);
  }

  /** The cell served `userId` lately (it may hold its workers, all busy). */
  serves(userId: string): boolean {
    return this.current(userId) !== null;
  }

  /** The user's entry, unless it has had nothing here for a worker's idle timeout (then it is forgotten). */
  private current(userId: string): UserEntry | null {
    const entry = this.users.get(userId);
    if (!entry) return null;
    if (quietFor(entry, this.now()) >= USER_WORKER_MEMORY_MS) {
      this.users.delete(userId);
      return null;
    }
    return entry;
  }

  /** The user's entry, moved to the end (the map is kept in order of use), after forgetting users gone stale. */
  private entry(userId: string): UserEntry {
    const now = this.now();
    const entry = this.users.get(userId) ?? { workers: new Map(), waiting: 0, lastUsed: now };
    this.users.delete(userId);
    for (const [user, e] of this.users) {
      if (now - e.lastUsed < USER_WORKER_MEMORY_MS) break;
      if (quietFor(e, now) >= USER_WORKER_MEMORY_MS) this.users.delete(user);
    }
    entry.lastUsed = now;
    this.users.set(userId, entry);
    return entry;
  }
}

/** How long the user has had nothing running or waiting here (0 while it has). */
function quietFor(entry: UserEntry, now: number): number {
  if (entry.waiting > 0) return 0;
  for (const idleSince of entry.workers.values()) if (idleSince === null) return 0;
  return now - entry.lastUsed;
}
