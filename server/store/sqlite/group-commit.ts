/**
 * Group commit for the front's writes. Every write asked for in the same turn of the event loop is applied
 * in one SQLite transaction at the next setImmediate, and each caller's promise settles after that commit:
 * an acknowledgement or a delivered event still means "on disk", but a burst of runs shares one commit
 * instead of paying one each.
 *
 * A write that fails on its own account (a constraint, a vanished row: `isWriteError`) must not take its
 * neighbours down: the batch is then rolled back and every write is applied again in a transaction of its
 * own, so only the faulty one fails. Any other failure (the database busy, closed or failing) fails the whole
 * batch at once: retrying each write alone would only repeat it, and on this synchronous connection a busy
 * database would hold the event loop once per write.
 */
import type Database from 'better-sqlite3';

export type Write<T> = () => T;

interface Pending {
  write: Write<unknown>;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/** A batch is cut at this many writes: one commit should not hold the event loop for long. */
const MAX_WRITES_PER_COMMIT = 2000;

export interface GroupCommit {
  /** Applies `write` (synchronous statements on this connection) in the next commit; resolves after it. */
  run<T>(write: Write<T>): Promise<T>;
  /** Commits what is queued now (shutdown). */
  flushNow(): void;
  /** Writes committed and commits made since start (metrics, benchmarks). */
  readonly stats: { writes: number; commits: number; retriedAlone: number };
}

/** `afterCommit`: called after each batch (the WAL checkpointer follows the writes: wal-checkpointer.ts). */
export function createGroupCommit(db: Database.Database, isWriteError: (err: unknown) => boolean, afterCommit: () => void = () => undefined): GroupCommit {
  let queue: Pending[] = [];
  let scheduled: NodeJS.Immediate | null = null;
  const stats = { writes: 0, commits: 0, retriedAlone: 0 };

  const applyAll = db.transaction((batch: Pending[]) => batch.map((p) => p.write()));

  function commit(batch: Pending[]): void {
    let results: unknown[];
    try {
      results = applyAll(batch);
    } catch (err) {
      if (!isWriteError(err)) {
        for (const p of batch) p.reject(err);
        return;
      }
      // One write in the batch failed and the whole batch was rolled back: apply each alone.
      stats.retriedAlone += batch.length;
      for (const p of batch) {
        try {
          const value = db.transaction(p.write)();
          stats.writes++;
          stats.commits++;
          p.resolve(value);
        } catch (err) {
          p.reject(err);
        }
      }
      return;
    }
    stats.writes += batch.length;
    stats.commits++;
    batch.forEach((p, i) => p.resolve(results[i]));
  }

  function commitNext(): void {
    const batch = queue.length <= MAX_WRITES_PER_COMMIT ? queue : queue.slice(0, MAX_WRITES_PER_COMMIT);
    queue = queue.length <= MAX_WRITES_PER_COMMIT ? [] : queue.slice(MAX_WRITES_PER_COMMIT);
    commit(batch);
    afterCommit();
  }

  function scheduledFlush(): void {
    scheduled = null;
    commitNext();
    // More than one commit's worth: the rest waits a turn, so sockets and timers are served in between.
    if (queue.length > 0) scheduled = setImmediate(scheduledFlush);
  }

  function flushNow(): void {
    if (scheduled) clearImmediate(scheduled);
    scheduled = null;
    while (queue.length > 0) commitNext();
  }

  return {
    run<T>(write: Write<T>): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        queue.push({ write, resolve: resolve as (v: unknown) => void, reject });
        scheduled ??= setImmediate(scheduledFlush);
      });
    },
    flushNow,
    stats,
  };
}
