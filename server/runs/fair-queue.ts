/**
 * The queue of accepted runs waiting for a worker: one FIFO per user, served round-robin across users, so
 * a user's runs start in the order they were accepted and one user flooding never delays another.
 */
import type { LiveRun } from './live-run.js';

export function createFairQueue() {
  const byUser = new Map<string, LiveRun[]>();
  /** Users with waiting runs, in the order they will next be served. */
  let order: string[] = [];
  let size = 0;
  /**
   * Places held by requests still being accepted (between the limit check and `add`, across awaits):
   * counted with the waiting runs, so a burst cannot pass the check together.
   */
  const reservedByUser = new Map<string, number>();
  let reserved = 0;

  function remove(run: LiveRun): boolean {
    const list = byUser.get(run.userId);
    const i = list ? list.indexOf(run) : -1;
    if (!list || i < 0) return false;
    list.splice(i, 1);
    size--;
    if (list.length === 0) {
      byUser.delete(run.userId);
      order = order.filter((u) => u !== run.userId);
    }
    return true;
  }

  function insert(run: LiveRun, atHead: boolean): void {
    const list = byUser.get(run.userId);
    if (list) atHead ? list.unshift(run) : list.push(run);
    else {
      byUser.set(run.userId, [run]);
      atHead ? order.unshift(run.userId) : order.push(run.userId);
    }
    size++;
  }

  return {
    get size() {
      return size;
    },
    add(run: LiveRun): void {
      insert(run, false);
    },
    /** Back at the head of its user's queue: a run that was taken but never reached a cell keeps its place. */
    addFirst(run: LiveRun): void {
      insert(run, true);
    },
    remove,
    /** 1-based place of the run among its user's waiting runs, or 0. */
    position(run: LiveRun): number {
      return (byUser.get(run.userId)?.indexOf(run) ?? -1) + 1;
    },
    /** Waiting runs plus places reserved by requests being accepted. */
    get claimed() {
      return size + reserved;
    },
    queuedFor(userId: string): number {
      return byUser.get(userId)?.length ?? 0;
    },
    claimedFor(userId: string): number {
      return (byUser.get(userId)?.length ?? 0) + (reservedByUser.get(userId) ?? 0);
    },
    /** Holds one place for `userId` until the returned release is called (once; later calls do nothing). */
    reserve(userId: string): () => void {
      reserved++;
      reservedByUser.set(userId, (reservedByUser.get(userId) ?? 0) + 1);
      let held = true;
      return () => {
        if (!held) return;
        held = false;
        reserved--;
        const n = (reservedByUser.get(userId) ?? 1) - 1;
        if (n > 0) reservedByUser.set(userId, n);
        else reservedByUser.delete(userId);
      };
    },
    /**
     * The next run to start: the oldest waiting run of the first user, in round-robin order, whose oldest
     * run `eligible` accepts. That user then goes to the back of the line.
     */
    take(eligible: (run: LiveRun) => boolean): LiveRun | null {
      for (const user of order) {
        const head = byUser.get(user)![0];
        if (!eligible(head)) continue;
        remove(head);
        if (byUser.has(user)) order = [...order.filter((u) => u !== user), user];
        return head;
      }
      return null;
    },
    *values(): IterableIterator<LiveRun> {
      for (const list of byUser.values()) yield* list;
    },
    clear(): void {
      byUser.clear();
      order = [];
      size = 0;
    },
  };
}

export type FairQueue = ReturnType<typeof createFairQueue>;
