/** The RunWrites (../run-writes.ts) on PostgreSQL: each write is an item of the next group commit. */
import type pg from 'pg';
import type { Logger } from '../../logger.js';
import { RowMissingError, type DeletedThread, type RunWrites } from '../run-writes.js';
import type { Backends } from './backends.js';
import { createPgGroupCommit, type PgGroupCommit } from './group-commit.js';
import { explain, isRequest, isWriteError, runStatements, undoStatements, utc, type RunWrite } from './run-statements.js';

export interface PgRunWrites extends RunWrites {
  readonly commits: PgGroupCommit<RunWrite>;
}

/** A thread's delete removes this many of its events (then messages) per statement before the short final transaction. */
const DELETE_CHUNK_ROWS = 1000;

/** The rows of the thread's runs that have ended ($1 thread, $2 its user): what the chunks may take. */
const ENDED_RUNS = 'SELECT r."id" FROM "Run" AS r WHERE r."threadId" = $1 AND r."userId" = $2 AND r."status" NOT IN (\'queued\', \'running\')';
/** What a chunk took, off the user's count in the same statement; n: how many rows went. */
const counted = (gone: string) =>
  `WITH gone AS (${gone}), counted AS (UPDATE "UserStorage" SET "bytes" = "bytes" - (SELECT coalesce(sum(b), 0) FROM gone) WHERE "userId" = $2) SELECT count(*)::int AS "n" FROM gone`;

const Q = {
  stored: 'SELECT "bytes" FROM "UserStorage" WHERE "userId" = $1',
  owned: 'SELECT 1 FROM "Thread" WHERE "id" = $1 AND "userId" = $2',
  unfinished: 'SELECT 1 FROM "Run" WHERE "threadId" = $1 AND "status" IN (\'queued\', \'running\') LIMIT 1',
  deleteEvents: counted(`DELETE FROM "RunEvent" WHERE "id" IN (SELECT e."id" FROM "RunEvent" AS e WHERE e."runId" IN (${ENDED_RUNS}) LIMIT $3) RETURNING octet_length("payload") AS b`),
  deleteMessages: counted(
    `DELETE FROM "Message" WHERE "id" IN (SELECT m."id" FROM "Message" AS m WHERE m."threadId" = $1 AND (m."runId" IS NULL OR m."runId" IN (${ENDED_RUNS})) LIMIT $3) RETURNING octet_length("content") AS b`,
  ),
  // The final transaction: the thread's row locked (an accept continuing it waits, then finds it gone), then what is
  // left of it (nothing, unless a run came meanwhile: then it is busy and stays).
  lockThread: 'SELECT "id" FROM "Thread" WHERE "id" = $1 AND "userId" = $2 FOR UPDATE',
  threadBytes:
    'SELECT (SELECT coalesce(sum(octet_length(e."payload")), 0) FROM "RunEvent" AS e JOIN "Run" AS r ON r."id" = e."runId" WHERE r."threadId" = $1) + ' +
    '(SELECT coalesce(sum(octet_length(m."content")), 0) FROM "Message" AS m WHERE m."threadId" = $1) AS "bytes"',
  // Its messages and runs (and their events) go with it: ON DELETE CASCADE.
  deleteThread: 'DELETE FROM "Thread" WHERE "id" = $1',
  release: 'UPDATE "UserStorage" SET "bytes" = "bytes" - $2 WHERE "userId" = $1',
};

/**
 * `backends`: how connections given up on are ended (backends.ts; a test can stall it). `reads`: where the user's
 * stored bytes are read and a thread deleted (the front's read pool), off the group commit's one connection.
 */
export function createPgRunWrites(pool: pg.Pool, log: Pick<Logger, 'info' | 'warn'>, backends?: Backends, reads: pg.Pool = pool): PgRunWrites {
  /**
   * Threads this node is deleting: an accept continuing one fails as if it were gone, rather than wait for the
   * delete's lock on the thread inside the group commit, which every user's writes on this node go through.
   */
  const deleting = new Set<string>();
  /**
   * Marked before the thread is found to be the user's (its lock is the delete's first statement), so keyed by who
   * asked too: another user's DELETE of the id leaves the owner's thread, accepts and DELETE alone.
   */
  const keyOf = (userId: string, threadId: string) => `${userId}\u0000${threadId}`;
  const isDeleting = (userId: string, threadId: string) => deleting.has(keyOf(userId, threadId));
  /** The short last transaction of a thread's delete: the thread's row and what is left of it, or 'busy'. */
  async function finalDelete(userId: string, threadId: string): Promise<DeletedThread> {
    const client = await reads.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      let outcome: DeletedThread = 'deleted';
      if ((await client.query(Q.lockThread, [threadId, userId])).rowCount === 0) outcome = 'missing';
      else if ((await client.query(Q.unfinished, [threadId])).rowCount! > 0) outcome = 'busy';
      else {
        const { rows } = await client.query<{ bytes: string }>(Q.threadBytes, [threadId]);
        await client.query(Q.deleteThread, [threadId]);
        await client.query(Q.release, [userId, rows[0]!.bytes]);
      }
      await client.query(outcome === 'deleted' ? 'COMMIT' : 'ROLLBACK');
      return outcome;
    } catch (err) {
      await client.query('ROLLBACK').catch((e: Error) => (broken = e));
      throw err;
    } finally {
      client.release(broken);
    }
  }
  const commits = createPgGroupCommit<RunWrite>(pool, { statements: runStatements, undo: undoStatements, isRequest, isWriteError, explain }, log, backends);
  return {
    commits,
    createThread: (userId, id, title, at) => commits.run({ kind: 'thread', userId, id, title, at: utc(at) }),
    acceptRun: (row) => (row.threadId !== null && isDeleting(row.userId, row.threadId) ? Promise.reject(new RowMissingError(`thread ${row.threadId} does not exist`)) : commits.run({ kind: 'accept', row })),
    markRunning: (runId, cellId, workerId, startedAt, attempts, owner = null) => commits.run({ kind: 'running', runId, cellId, workerId, startedAt: utc(startedAt), attempts, owner }),
    markRequeued: (runId, owner = null) => commits.run({ kind: 'requeued', runId, owner }),
    appendEvents: (events, owner = null) => commits.run({ kind: 'events', events, owner }),
    finishRun: (row, owner = null) => commits.run({ kind: 'finish', row, owner }),

    async storedBytes(userId) {
      // Named: prepared once per connection, since every accept asks.
      const { rows } = await reads.query<{ bytes: string }>({ name: 'atoll_stored_bytes', text: Q.stored, values: [userId] });
      return Number(rows[0]?.bytes ?? 0);
    },

    isDeleting,

    async deleteThread(userId, threadId): Promise<DeletedThread> {
      // One delete of a thread at a time per user on this node: a second of the same user's finds it gone. Another
      // user's DELETE of the id (whose it cannot be) neither hides it from its owner nor turns the owner's away.
      const key = keyOf(userId, threadId);
      if (deleting.has(key)) return 'missing';
      deleting.add(key);
      const unmark = () => void deleting.delete(key);
      try {
        if ((await reads.query(Q.owned, [threadId, userId])).rowCount === 0) return 'missing';
        if ((await reads.query(Q.unfinished, [threadId])).rowCount! > 0) return 'busy';
        // The bulk in statements of their own, without the thread's lock: one transaction over all of it held that lock
        // for as long as its cascade took, and an accept continuing the thread (through another node, or queued here
        // before the mark) waited that long, in the group commit every user's writes on a node go through.
        for (const chunk of [Q.deleteEvents, Q.deleteMessages]) {
          while ((await reads.query<{ n: number }>(chunk, [threadId, userId, DELETE_CHUNK_ROWS])).rows[0]!.n > 0);
        }
        return await finalDelete(userId, threadId);
      } finally {
        unmark();
      }
    },
  };
}
