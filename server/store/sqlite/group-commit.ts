/**
 * Group commit for the front's writes. Every write asked for in the same turn of the event loop is applied
 * in one SQLite transaction at the next setImmediate, and each caller's promise settles after that commit:
 * an acknowledgement or a delivered event still means "on disk", but a burst of runs shares one commit
 * instead of paying one each.
 *
 * Failures, by what they mean:
 * - a write's own fault (a constraint, a vanished row: `isWriteError`): the batch is rolled back and every write
 *   is applied again in a transaction of its own, so only the faulty one fails;
 * - the storage failing (the disk full, an I/O error, the file locked by another process: unavailable.ts): the
 *   batch is rolled back whole, as SQLite does; a request's write (accepting a run, creating a thread) fails
 *   with DB_UNAVAILABLE, retryable, and every other write (a run's events, status changes, its finish: work
 *   already acknowledged) is kept, in order, and committed again with backoff until the storage takes it. While
 *   kept writes wait, new requests fail at once; with none kept, the next request is itself the next attempt.
 *   Before this, a full disk failed acknowledged runs' events and finishes, which were lost, and every request
 *   answered INTERNAL (found on a 24 MB tmpfs: 4 acknowledged runs never ended);
 * - anything else (a bug, a closed database): the whole batch fails at once: retrying each write alone would
 *   only repeat it, and on this synchronous connection that costs the event loop once per write.
 */
import type Database from 'better-sqlite3';
import { unavailableError } from '../db-unavailable.js';
import { isStorageFailure, storageCodeOf } from './unavailable.js';

export type Write<T> = () => T;

interface Pending {
  write: Write<unknown>;
  /** A request's write: fails with DB_UNAVAILABLE while the storage fails, instead of waiting for it. */
  request: boolean;
  /** Kept through a storage failure at least once (counted once in stats.kept). */
  kept?: boolean;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/** A batch is cut at this many writes: one commit should not hold the event loop for long. */
const MAX_WRITES_PER_COMMIT = 2000;
/** Kept writes are tried again after this, doubling up to RETRY_MAX_MS while the storage still fails. */
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 2_000;

export interface GroupCommit {
  /** Applies `write` (synchronous statements on this connection) in the next commit; resolves after it. */
  run<T>(write: Write<T>, opts?: { request?: boolean }): Promise<T>;
  /** Commits what is queued now (shutdown): one attempt; what the storage still refuses then fails. */
  flushNow(): void;
  /**
   * Why acknowledged writes wait (SQLITE_FULL...): the storage refused them and they are kept for the next attempt.
   * Null otherwise, also while requests alone fail: each of those is itself an attempt, and reads still work.
   */
  readonly failing: string | null;
  /** Writes committed and commits made since start (metrics, benchmarks); writes kept through a storage failure. */
  readonly stats: { writes: number; commits: number; retriedAlone: number; kept: number };
}

export interface GroupCommitLog {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

/** `afterCommit`: called after each batch (the WAL checkpointer follows the writes: wal-checkpointer.ts). */
export function createGroupCommit(db: Database.Database, isWriteError: (err: unknown) => boolean, log: GroupCommitLog, afterCommit: () => void = () => undefined): GroupCommit {
  let queue: Pending[] = [];
  let scheduled: NodeJS.Immediate | null = null;
  /** The next attempt while the storage fails and writes are kept. */
  let retry: NodeJS.Timeout | null = null;
  let retryMs = RETRY_FIRST_MS;
  let failing: string | null = null;
  /**
   * Writes per commit: halved by each attempt the storage refuses, doubled by each commit, up to
   * MAX_WRITES_PER_COMMIT. A disk with room for some of the kept writes takes those, in order: retried whole, a
   * batch larger than the room freed never committed (50 kept writes of 1 MiB, 24 MiB freed: none, ever), and a
   * failing attempt re-applies fewer writes.
   */
  let slice = MAX_WRITES_PER_COMMIT;
  const stats = { writes: 0, commits: 0, retriedAlone: 0, kept: 0 };

  const applyAll = db.transaction((batch: Pending[]) => batch.map((p) => p.write()));

  /** The storage refused `batch` (the rest of it, in order): requests fail, the others go first in line. */
  function storageFailed(batch: Pending[], err: unknown, final: boolean, attempted = batch.length): void {
    const kept = final ? [] : batch.filter((p) => !p.request);
    slice = Math.max(1, Math.ceil(attempted / 2));
    if (failing === null) log.warn({ err: storageCodeOf(err), writes_kept: kept.length }, 'the database cannot write (storage failing); requests fail with DB_UNAVAILABLE, acknowledged writes are kept and retried');
    failing = storageCodeOf(err);
    for (const p of batch) if (final || p.request) p.reject(p.request ? unavailableError() : err);
    for (const p of kept) if (!p.kept) (p.kept = true), stats.kept++;
    // Kept writes go first: a run's events stay in order.
    queue = [...kept, ...queue];
  }

  function succeeded(): void {
    if (failing !== null) log.info({ kept_writes: stats.kept }, 'the database writes again; kept writes committed');
    failing = null;
    retryMs = RETRY_FIRST_MS;
    slice = Math.min(MAX_WRITES_PER_COMMIT, slice * 2);
  }

  /** `final`: shutdown's last attempt, nothing is kept for another. */
  function commit(batch: Pending[], final: boolean): void {
    let results: unknown[];
    try {
      results = applyAll(batch);
    } catch (err) {
      if (isStorageFailure(err)) return storageFailed(batch, err, final);
      if (!isWriteError(err)) {
        for (const p of batch) p.reject(err);
        return;
      }
      // One write in the batch failed and the whole batch was rolled back: apply each alone.
      stats.retriedAlone += batch.length;
      for (const [i, p] of batch.entries()) {
        try {
          const value = db.transaction(p.write)();
          stats.writes++;
          stats.commits++;
          succeeded();
          p.resolve(value);
        } catch (aloneErr) {
          if (isStorageFailure(aloneErr)) return storageFailed(batch.slice(i), aloneErr, final, 1);
          p.reject(aloneErr);
        }
      }
      // Each write failed on its own account, if any did not commit: the storage answered all the same.
      succeeded();
      return;
    }
    stats.writes += batch.length;
    stats.commits++;
    succeeded();
    batch.forEach((p, i) => p.resolve(results[i]));
  }

  function commitNext(final: boolean): void {
    // Shutdown's last attempt is made in full batches: what the storage refuses then fails either way.
    commit(queue.splice(0, final ? MAX_WRITES_PER_COMMIT : slice), final);
    afterCommit();
  }

  function scheduledFlush(): void {
    scheduled = null;
    retry = null;
    commitNext(false);
    if (failing !== null && queue.length > 0) {
      // Acknowledged writes wait for the next attempt; requests that came meanwhile fail now, as do those that
      // come while waiting (run()). With nothing kept, the next request is itself the next attempt: storage that
      // is back is never reported failing from what an old attempt found.
      queue = queue.filter((p) => (p.request ? (p.reject(unavailableError()), false) : true));
      if (queue.length > 0) {
        retry = setTimeout(scheduledFlush, retryMs);
        retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
      }
      return;
    }
    // More than one commit's worth: the rest waits a turn, so sockets and timers are served in between.
    if (queue.length > 0) scheduled = setImmediate(scheduledFlush);
  }

  function flushNow(): void {
    if (scheduled) clearImmediate(scheduled);
    if (retry) clearTimeout(retry);
    scheduled = null;
    retry = null;
    while (queue.length > 0) commitNext(true);
  }

  return {
    run<T>(write: Write<T>, opts: { request?: boolean } = {}): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const request = opts.request === true;
        // The storage fails and kept writes wait for their next attempt: a request fails now rather than wait.
        if (retry && request) return reject(unavailableError());
        queue.push({ write, request, resolve: resolve as (v: unknown) => void, reject });
        if (!retry) scheduled ??= setImmediate(scheduledFlush);
      });
    },
    flushNow,
    get failing() {
      return retry ? failing : null;
    },
    stats,
  };
}
