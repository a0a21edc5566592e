/**
 * Group commit on PostgreSQL: every write asked for while the previous commit was under way goes into the next
 * one, as one transaction of a few multi-row statements (run-statements.ts batches them by statement, not one
 * round trip per row; usually one statement, which commits on its own when the batch holds no request). Each
 * caller's promise settles after the commit has returned: "acknowledged" means committed, as on SQLite.
 *
 * Failures, by what they mean:
 * - a write's own fault (a constraint, a missing row): the batch is rolled back and every write is applied
 *   again alone, so only the faulty one fails (as on SQLite);
 * - the database unreachable (connection refused, reset, shut down, a statement with no answer at all:
 *   unavailable.ts): a request's write (accepting a run, creating a thread) fails with DB_UNAVAILABLE,
 *   retryable, and while the next attempt is awaited new ones fail at once; every other write (a run's events,
 *   status changes, its finish: work already acknowledged) is kept, in order, and committed again and again with
 *   backoff until the database is back (or close() gives up on it). With nothing kept (at most undos waiting)
 *   the next request is itself the next attempt. The statements are idempotent, so a batch whose COMMIT was lost
 *   in flight can be committed twice. A request write whose connection was lost may have been committed (COMMIT
 *   goes with the statements): the connection's backend is ended first (backends.ts: it could still be executing
 *   that COMMIT), then the write is undone (deleted) in the next transaction, so "failed" still means "nothing
 *   accepted";
 * - an error raised on this side (no SQLSTATE) once a request's COMMIT went out: in doubt, as a lost connection;
 * - anything else (a bug): every write of the batch fails with it.
 */
import type pg from 'pg';
import { messageOf } from '../../../protocol/errors.js';
import type { Logger } from '../../logger.js';
import { createBackends, type Backend, type Backends } from './backends.js';
import { causeOfFailure, convertedValues, pipelinedTransaction, TransactionFailed } from './pipelined-transaction.js';
import { retryRolledBack } from './rolled-back.js';
import { unavailableError } from '../db-unavailable.js';
import { isServerAnswer, isUnavailable } from './unavailable.js';

export interface Statement {
  name: string;
  text: string;
  values: unknown[];
}

export interface Batching<I> {
  /** The statements that apply these writes, in order (one transaction). */
  statements(items: I[]): Statement[];
  /** The statements that remove what these request writes left, in case their COMMIT did happen. */
  undo(items: I[]): Statement[];
  /** A request's write: fails fast while the database is unreachable instead of waiting for it. */
  isRequest(item: I): boolean;
  /** A write's own fault (the batch is retried write by write), as opposed to the database's. */
  isWriteError(err: unknown): boolean;
  /** The error a write alone fails with (a unique violation becomes a coded error, for instance). */
  explain(item: I, err: unknown): unknown;
}

interface Pending<I> {
  item: I;
  resolve: () => void;
  reject: (err: unknown) => void;
}

class CommitFailed extends Error {
  constructor(
    override readonly cause: unknown,
    /** COMMIT was sent and its answer lost: the transaction may have committed. */
    readonly inDoubt: boolean,
    /** The backend that may still commit it (a batch holding a request). */
    readonly backend: Backend | null = null,
    /** Not a database answer nor a lost connection known as such, after a request's COMMIT went out: in doubt too. */
    readonly unrecognised = false,
    /** Nothing was sent (a value pg could not convert): the fault of one write, which nothing committed. */
    readonly unsent = false,
  ) {
    super(messageOf(cause));
  }
}

/** At most this many writes per commit: one transaction stays short. */
const MAX_WRITES_PER_COMMIT = 1000;
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 2_000;

export interface PgGroupCommit<I> {
  run(item: I): Promise<void>;
  /** True when the last attempt found the database unreachable (until one succeeds). */
  readonly unreachable: boolean;
  /** Request writes whose COMMIT was lost and that are not yet undone: reads must not trust what they see. */
  readonly undoPending: boolean;
  /** Commits what is queued; writes still waiting after `graceMs` (the database unreachable) fail. */
  close(graceMs: number): Promise<void>;
  readonly stats: { writes: number; commits: number; retriedAlone: number; retriedUnreachable: number };
}

export function createPgGroupCommit<I>(pool: pg.Pool, batching: Batching<I>, log: Pick<Logger, 'info' | 'warn'>, backends: Backends = createBackends()): PgGroupCommit<I> {
  let queue: Pending<I>[] = [];
  let toUndo: I[] = [];
  /** Backends of connections given up on with a request's COMMIT in doubt: ended before the undo. */
  let toEnd: Backend[] = [];
  let flushing = false;
  let unreachable = false;
  let closing = false;
  /** When closing gives up on writes the database cannot take (ms since the epoch). */
  let closeBy: number | null = null;
  let retryMs = RETRY_FIRST_MS;
  /** Between two attempts while the database is unreachable. */
  let waiting = false;
  let wake: (() => void) | null = null;
  let idle: (() => void) | null = null;
  const stats = { writes: 0, commits: 0, retriedAlone: 0, retriedUnreachable: 0 };

  /**
   * A single statement without requests commits on its own; otherwise BEGIN, the statements and COMMIT go out
   * together (pipelined-transaction.ts): one round trip. A batch holding a request whose connection is lost is in
   * doubt, whenever it was lost (the server may still execute what it was sent): its backend is ended and its
   * requests undone before the next commit (commit()).
   */
  async function transaction(statements: Statement[], requests: boolean): Promise<void> {
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      throw new CommitFailed(err, false);
    }
    let backend: Backend | null = null;
    try {
      // Known before anything is sent: the backend to end if this COMMIT is left in doubt.
      if (requests) backend = await backends.of(client);
    } catch (err) {
      client.release(isUnavailable(err) ? (err as Error) : undefined);
      throw new CommitFailed(err, false);
    }
    try {
      // Rolled back by the database for a deadlock with another transaction: nothing committed, sent again.
      await retryRolledBack(async () => {
        if (statements.length === 1 && !requests) {
          const [statement] = convertedValues(statements);
          try {
            await client.query(statement!);
          } catch (err) {
            throw new TransactionFailed(err);
          }
        } else {
          await pipelinedTransaction(client, statements);
        }
      }, causeOfFailure);
    } catch (err) {
      // COMMIT went out with the statements (or the lone statement commits by itself): a lost answer leaves it in doubt.
      // Anything but a TransactionFailed is taken as sent: what is not known unsent may have committed.
      const cause = causeOfFailure(err);
      const sent = !(err instanceof TransactionFailed) || err.sent;
      if (!sent) {
        client.release();
        throw new CommitFailed(cause, false, null, false, true);
      }
      const lost = isUnavailable(cause);
      // Whatever broke on this side once a request's COMMIT was sent (not the server's answer), that COMMIT may have
      // happened: in doubt as a lost connection is, rather than a bug's failure that says nothing was accepted.
      const unrecognised = !lost && requests && !isServerAnswer(cause);
      // A connection that failed is discarded, not returned to the pool.
      client.release(lost || unrecognised ? (cause as Error) : undefined);
      throw new CommitFailed(cause, lost || unrecognised, backend, unrecognised);
    }
    // Out of the try: what it might throw is not the transaction's failure.
    client.release();
  }

  /** Ends the backends that may still commit a request in doubt; false while one is still running. */
  async function endInDoubt(): Promise<boolean> {
    for (const backend of [...toEnd]) {
      const ending = await backends.end(pool, backend);
      if (ending === 'alive') {
        log.warn({ pid: backend.pid }, 'a connection given up on with a COMMIT in doubt is still executing on the server; its requests are undone once it has ended');
        return false;
      }
      if (ending === 'not-allowed') log.warn({ pid: backend.pid }, "a connection given up on with a COMMIT in doubt cannot be ended (the database role may not signal it: grant it pg_signal_backend); its requests are undone now, and a COMMIT the server still holds could land after");
      toEnd = toEnd.filter((b) => b !== backend);
    }
    return true;
  }

  async function commit(batch: Pending<I>[]): Promise<void> {
    if (toEnd.length > 0) {
      // A request in doubt is undone only once nothing can commit it any more.
      const ended = await endInDoubt().catch((err: unknown) => {
        // Whatever it was, the backend is not known to have ended: the undo waits for the next attempt.
        if (!isUnavailable(err)) log.warn({ err: (err as Error)?.message }, 'ending a connection given up on with a COMMIT in doubt failed');
        return false;
      });
      if (!ended) return unreachableFailure(batch, null);
    }
    const undoing = toUndo;
    try {
      await transaction([...batching.undo(undoing), ...batching.statements(batch.map((p) => p.item))], batch.some((p) => batching.isRequest(p.item)));
    } catch (err) {
      const failure = err as CommitFailed;
      if (failure.unrecognised) log.warn({ err: messageOf(failure.cause) }, "a commit holding requests failed on this side after its COMMIT was sent: it may have happened, so its requests are refused and undone");
      // Unsent is one write's fault whatever its error says: nothing went out, so nothing is in doubt.
      if (!failure.unsent && (isUnavailable(failure.cause) || failure.unrecognised)) return unreachableFailure(batch, failure.inDoubt ? failure.backend : null);
      if (!batching.isWriteError(failure.cause) && !failure.unsent) {
        for (const p of batch) p.reject(failure.cause);
        return;
      }
      // One write is at fault: apply each alone (undo first, on its own).
      stats.retriedAlone += batch.length;
      if (undoing.length > 0) {
        try {
          await transaction(batching.undo(undoing), false);
          toUndo = toUndo.filter((i) => !undoing.includes(i));
        } catch (undoErr) {
          if (isUnavailable((undoErr as CommitFailed).cause)) return unreachableFailure(batch, null);
        }
      }
      for (const [i, p] of batch.entries()) {
        try {
          await transaction(batching.statements([p.item]), batching.isRequest(p.item));
          stats.writes++;
          stats.commits++;
          p.resolve();
        } catch (aloneErr) {
          const cause = (aloneErr as CommitFailed).cause;
          const failed = aloneErr as CommitFailed;
          if (!failed.unsent && (isUnavailable(cause) || failed.unrecognised)) return unreachableFailure(batch.slice(i), failed.inDoubt ? failed.backend : null);
          p.reject(batching.explain(p.item, cause));
        }
      }
      return;
    }
    toUndo = toUndo.filter((i) => !undoing.includes(i));
    stats.writes += batch.length;
    stats.commits++;
    if (unreachable) log.info({ retried_writes: stats.retriedUnreachable }, 'the database is reachable again; kept writes committed');
    unreachable = false;
    retryMs = RETRY_FIRST_MS;
    for (const p of batch) p.resolve();
  }

  /** `inDoubt`: the backend of a lost COMMIT that held this batch's requests (null: nothing was committed). */
  function unreachableFailure(batch: Pending<I>[], inDoubt: Backend | null): void {
    if (!unreachable) log.warn({ writes_kept: batch.filter((p) => !batching.isRequest(p.item)).length }, 'the database is unreachable; requests fail with DB_UNAVAILABLE, acknowledged writes are kept and retried');
    unreachable = true;
    const kept: Pending<I>[] = [];
    if (inDoubt && batch.some((p) => batching.isRequest(p.item))) toEnd.push(inDoubt);
    for (const p of batch) {
      if (!batching.isRequest(p.item)) kept.push(p);
      else {
        if (inDoubt) toUndo.push(p.item);
        p.reject(unavailableError());
      }
    }
    stats.retriedUnreachable += kept.length;
    // Kept writes go first: a run's events stay in order.
    queue = [...kept, ...queue];
  }

  async function flush(): Promise<void> {
    flushing = true;
    // Undoing is tried while closing too, until the grace is over: a database that is back gets it done.
    while (queue.length > 0 || toUndo.length > 0) {
      await commit(queue.splice(0, MAX_WRITES_PER_COMMIT));
      if (!unreachable && queue.length === 0 && toUndo.length > 0) {
        // The undo itself failed, and not for want of the database (a bug): trying again would spin.
        log.warn({ requests: toUndo.length }, 'refused requests whose COMMIT was lost in flight could not be undone: if they were committed, their runs stay queued');
        toUndo = [];
      }
      if (!unreachable || (queue.length === 0 && toUndo.length === 0)) continue;
      if (closeBy !== null && Date.now() >= closeBy) {
        // Closing, and still unreachable after the grace: what is left fails (recovery at the next start settles
        // those runs). Checked after every attempt, so an attempt under way when the grace ends cannot hold close().
        for (const p of queue.splice(0)) p.reject(unavailableError());
        break;
      }
      // Acknowledged writes wait for the next attempt; requests that came during this one fail now, as do those
      // that come while waiting (run()). With nothing kept the loop ends here, and the next request is itself the
      // next attempt: a database that is back is never reported unreachable from what an old attempt found.
      queue = queue.filter((p) => (batching.isRequest(p.item) ? (p.reject(unavailableError()), false) : true));
      waiting = true;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, closeBy === null ? retryMs : Math.min(retryMs, Math.max(0, closeBy - Date.now())));
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = null;
      waiting = false;
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    }
    flushing = false;
    idle?.();
  }

  return {
    run(item: I): Promise<void> {
      return new Promise<void>((resolve, reject) => {
        if (closing) return reject(unavailableError());
        if (waiting && batching.isRequest(item)) {
          // Unreachable, and the next attempt is still to come: a request fails now rather than wait for it, unless
          // only undos wait (nothing acknowledged kept, no backend left to end): then it is the next attempt, as when
          // nothing waits at all.
          if (toEnd.length > 0 || queue.some((p) => !batching.isRequest(p.item))) return reject(unavailableError());
          queue.push({ item, resolve, reject });
          return wake?.();
        }
        queue.push({ item, resolve, reject });
        // The next turn: what else is asked for in this one shares the commit.
        if (!flushing) {
          flushing = true;
          setImmediate(() => void flush());
        }
      });
    },
    get unreachable() {
      return unreachable;
    },
    get undoPending() {
      return toUndo.length > 0;
    },
    async close(graceMs: number): Promise<void> {
      closing = true;
      closeBy = Date.now() + graceMs;
      if (flushing) {
        const done = new Promise<void>((resolve) => (idle = resolve));
        wake?.();
        await done;
      }
      if (toUndo.length > 0) {
        // Their callers were told DB_UNAVAILABLE; a retry with the same correlation_id finds the run instead.
        log.warn({ requests: toUndo.length }, 'refused requests whose COMMIT was lost in flight could not be undone before closing: if they were committed, the next start recovers their runs');
      }
    },
    stats,
  };
}
