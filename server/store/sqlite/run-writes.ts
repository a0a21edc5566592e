/**
 * The front's writes on its hot path, as prepared statements on its own better-sqlite3 connection, committed
 * in groups (group-commit.ts). Prisma stays the schema, the migrations, every read and the workers' ctx.db;
 * it is not used for these writes because it costs about half a millisecond of CPU per query (its query
 * compiler runs in WebAssembly and its adapter prepares every statement again), which was half of the
 * front's CPU per run. Rows are written exactly as Prisma writes them (DateTime as ISO-8601 text with
 * "+00:00"), so Prisma reads them back, compares them and orders them as its own.
 *
 * All the front's writes go through here: a second writer on this process would wait on the write lock
 * that this synchronous connection cannot release while it waits.
 */
import Database from 'better-sqlite3';
import type { RunEventEnvelope } from '../../../protocol/events.js';
import { answerOf, CorrelationTakenError, RowMissingError, type AcceptedRunRow, type DeletedThread, type FinishedRunRow, type RunWrites } from '../run-writes.js';
import { createGroupCommit, type GroupCommit, type GroupCommitLog } from './group-commit.js';
import { createWalCheckpointer, type WalCheckpointer } from './wal-checkpointer.js';

/**
 * The WAL is copied into the database file at most this often, on a thread of its own, and started over once
 * past WAL_RESTART_BYTES (wal-checkpointer.ts). 16 MiB: four times SQLite's own threshold (1000 pages).
 */
const CHECKPOINT_EVERY_MS = 100;
const WAL_RESTART_BYTES = 16 * 1024 * 1024;
/** A thread's delete commits at most this many rows, or this many characters of text (one row at least), at a time. */
const DELETE_CHUNK_ROWS = 1000;
const DELETE_CHUNK_CHARS = 8 * 1024 * 1024;

/** Prisma's DateTime text on SQLite (its adapter's default "iso8601" format). */
export const prismaDateTime = (d: Date | number | string): string => new Date(d).toISOString().replace('Z', '+00:00');

export function createRunWrites(
  databaseFile: string,
  opts: { busyTimeoutMs: number; synchronous?: 'normal' | 'full'; onCheckpointFailure?: (err: string) => void; log: GroupCommitLog },
): SqliteRunWrites {
  const db = new Database(databaseFile, { timeout: opts.busyTimeoutMs });
  // WAL with NORMAL: a commit survives a crash of this process; FULL also syncs every commit to disk.
  db.pragma(`synchronous = ${opts.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
  const checkpointer = createWalCheckpointer(db, databaseFile, { busyTimeoutMs: opts.busyTimeoutMs, minIntervalMs: CHECKPOINT_EVERY_MS, restartBytes: WAL_RESTART_BYTES, onFailure: opts.onCheckpointFailure });
  // A write's own failure: a constraint it breaks, or a row it needs that is gone.
  const isWriteError = (err: unknown) => err instanceof RowMissingError || err instanceof CorrelationTakenError || /^SQLITE_CONSTRAINT/.test(String((err as { code?: unknown })?.code));
  const commits: GroupCommit = createGroupCommit(db, isWriteError, opts.log, () => checkpointer.committed());

  const upsertUser = db.prepare('INSERT INTO "User" ("id", "createdAt") VALUES (?, ?) ON CONFLICT ("id") DO NOTHING');
  const insertThread = db.prepare('INSERT INTO "Thread" ("id", "userId", "title", "createdAt", "updatedAt") VALUES (?, ?, ?, ?, ?)');
  const touchThread = db.prepare('UPDATE "Thread" SET "updatedAt" = ? WHERE "id" = ?');
  // "size" is length() of the text as bound, the measure pages cut by size read (prisma-run-store.ts); named
  // parameters bind the text once for both.
  const insertMessage = db.prepare(
    'INSERT INTO "Message" ("threadId", "runId", "role", "content", "size", "status", "createdAt") VALUES (@threadId, @runId, @role, @content, length(@content), @status, @at)',
  );
  const insertRun = db.prepare(
    'INSERT INTO "Run" ("id", "threadId", "userId", "agentName", "input", "correlationId", "requestId", "status", "queuedAt", "attempts", "replayOf") ' +
      "VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, 0, ?)",
  );
  const insertEvent = db.prepare('INSERT INTO "RunEvent" ("id", "runId", "seq", "type", "payload", "size", "timestamp") VALUES (@id, @runId, @seq, @type, @payload, length(@payload), @at)');
  const setRunning = db.prepare('UPDATE "Run" SET "status" = \'running\', "cellId" = ?, "workerId" = ?, "startedAt" = ?, "attempts" = ? WHERE "id" = ?');
  const releaseCorrelation = db.prepare('UPDATE "Run" SET "correlationId" = NULL WHERE "userId" = ? AND "correlationId" = ? AND "queuedAt" < ?');
  const setQueued = db.prepare('UPDATE "Run" SET "status" = \'queued\' WHERE "id" = ?');
  const setFinished = db.prepare(
    'UPDATE "Run" SET "status" = ?, "errorCode" = ?, "errorMessage" = ?, "result" = ?, "report" = ?, "finishedAt" = ? WHERE "id" = ?',
  );

  // What each user holds (UserStorage): bytes added by the writes below, in the same transaction, and removed
  // with a thread; read before an accept (USER_MAX_STORED_BYTES).
  const addStored = db.prepare('INSERT INTO "UserStorage" ("userId", "bytes") VALUES (?, ?) ON CONFLICT ("userId") DO UPDATE SET "bytes" = "bytes" + excluded."bytes"');
  const readStored = db.prepare<[string], { bytes: number | bigint }>('SELECT "bytes" FROM "UserStorage" WHERE "userId" = ?');
  const threadOf = db.prepare<[string, string], { id: string }>('SELECT "id" FROM "Thread" WHERE "id" = ? AND "userId" = ?');
  const unfinishedIn = db.prepare<[string], { id: string }>('SELECT "id" FROM "Run" WHERE "threadId" = ? AND "status" IN (\'queued\', \'running\') LIMIT 1');
  // A thread is deleted in commits of at most DELETE_CHUNK_ROWS rows or DELETE_CHUNK_CHARS of text each ("size":
  // characters, read without the text), so that the front's event loop, which runs every commit, is never held for
  // longer than one of them: removing a row reads its text's overflow pages, ~1 ms per MiB (one commit of a 1 GiB
  // thread held every user's sockets 1.3 s, helper-106). octet_length() is the bytes Buffer.byteLength counted.
  const eventsOfThread = db.prepare<[string, number], { row: number; size: number }>(
    'SELECT e."rowid" AS "row", e."size" AS "size" FROM "RunEvent" AS e WHERE e."runId" IN (SELECT "id" FROM "Run" WHERE "threadId" = ?) LIMIT ?',
  );
  const messagesOfThread = db.prepare<[string, number], { row: number; size: number }>('SELECT "id" AS "row", "size" FROM "Message" WHERE "threadId" = ? LIMIT ?');
  const deleteEvent = db.prepare<[number], { bytes: number }>('DELETE FROM "RunEvent" WHERE "rowid" = ? RETURNING octet_length("payload") AS "bytes"');
  const deleteMessage = db.prepare<[number], { bytes: number }>('DELETE FROM "Message" WHERE "id" = ? RETURNING octet_length("content") AS "bytes"');
  const deleteRunsOf = db.prepare('DELETE FROM "Run" WHERE "threadId" = ?');
  const deleteThreadRow = db.prepare('DELETE FROM "Thread" WHERE "id" = ?');
  /** Threads being deleted: an accept continuing one fails as if it were gone (RowMissingError), so none lands in it. */
  const deleting = new Set<string>();

  /** Deletes the next chunk of a thread's rows (events first, then messages), off its user's count; false: none left. */
  const deleteChunk = (userId: string, threadId: string): boolean => {
    for (const [rowsOf, remove] of [
      [eventsOfThread, deleteEvent],
      [messagesOfThread, deleteMessage],
    ] as const) {
      const rows = rowsOf.all(threadId, DELETE_CHUNK_ROWS);
      if (rows.length === 0) continue;
      let [chars, bytes] = [0, 0];
      for (const r of rows) {
        if (chars > 0 && chars + r.size > DELETE_CHUNK_CHARS) break;
        chars += r.size;
        bytes += remove.get(r.row)?.bytes ?? 0;
      }
      addStored.run(userId, -bytes);
      return true;
    }
    return false;
  };

  /** Inserts an event; returns its payload's bytes. */
  const event = (e: RunEventEnvelope): number => {
    const payload = JSON.stringify(e.payload);
    insertEvent.run({ id: e.event_id, runId: e.run_id, seq: e.seq, type: e.type, payload, at: prismaDateTime(e.timestamp) });
    return Buffer.byteLength(payload);
  };
  /** Inserts a message; returns its content's bytes. */
  const message = (threadId: string, runId: string, role: string, content: string, status: string, at: string): number => {
    insertMessage.run({ threadId, runId, role, content, status, at });
    return Buffer.byteLength(content);
  };
  const stored = (userId: string): number => Number(readStored.get(userId)?.bytes ?? 0);

  return {
    commits,

    createThread(userId: string, id: string, title: string | null, at: Date): Promise<void> {
      const now = prismaDateTime(at);
      return commits.run(
        () => {
          upsertUser.run(userId, now);
          insertThread.run(id, userId, title, now, now);
        },
        { request: true },
      );
    },

    /** User, thread, the user's message, the run and its event 1: all or nothing, before the acknowledgement. */
    acceptRun(r: AcceptedRunRow): Promise<void> {
      const now = prismaDateTime(r.firstEvent.timestamp);
      const threadId = r.threadId ?? r.newThreadId;
      return commits.run(() => {
        upsertUser.run(r.userId, now);
        if (r.threadId) {
          if (deleting.has(r.threadId) || touchThread.run(now, r.threadId).changes === 0) throw new RowMissingError(`thread ${r.threadId} does not exist`);
        } else {
          insertThread.run(threadId, r.userId, r.inputText.slice(0, 80) || null, now, now);
        }
        let bytes = message(threadId, r.id, 'user', r.inputText, 'complete', now);
        // A correlation id is unique per user (an index): one used before the idempotency window is given up.
        if (r.correlationId !== null) releaseCorrelation.run(r.userId, r.correlationId, prismaDateTime(r.correlationSince));
        try {
          insertRun.run(r.id, threadId, r.userId, r.agentName, r.input, r.correlationId, r.requestId, now, r.replayOf);
        } catch (err) {
          if (r.correlationId !== null && /UNIQUE constraint failed: Run\.userId, Run\.correlationId/.test(String((err as Error).message))) {
            throw new CorrelationTakenError(r.userId, r.correlationId);
          }
          throw err;
        }
        bytes += event(r.firstEvent);
        addStored.run(r.userId, bytes);
      }, { request: true });
    },

    markRunning(runId: string, cellId: string, workerId: number, startedAt: Date, attempts: number): Promise<void> {
      return commits.run(() => void setRunning.run(cellId, workerId, prismaDateTime(startedAt), attempts, runId));
    },

    markRequeued(runId: string): Promise<void> {
      return commits.run(() => void setQueued.run(runId));
    },

    appendEvents(events: RunEventEnvelope[]): Promise<void> {
      return commits.run(() => {
        const byUser = new Map<string, number>();
        for (const e of events) byUser.set(e.user_id, (byUser.get(e.user_id) ?? 0) + event(e));
        for (const [userId, bytes] of byUser) addStored.run(userId, bytes);
      });
    },

    finishRun(f: FinishedRunRow): Promise<void> {
      const finishedAt = prismaDateTime(f.terminal.timestamp);
      return commits.run(() => {
        let bytes = event(f.terminal);
        setFinished.run(f.status, f.error?.code ?? null, f.error?.message ?? null, f.result === null ? null : JSON.stringify(f.result), f.report, finishedAt, f.runId);
        const answer = answerOf(f);
        if (answer) bytes += message(f.threadId, f.runId, 'assistant', answer.content, answer.status, finishedAt);
        if (answer?.status === 'complete') touchThread.run(finishedAt, f.threadId);
        addStored.run(f.terminal.user_id, bytes);
      });
    },

    async storedBytes(userId: string): Promise<number> {
      return stored(userId);
    },

    async deleteThread(userId: string, threadId: string): Promise<DeletedThread> {
      // Checked and marked in one commit: an accept continuing the thread commits before it (and the thread is busy)
      // or after it (and finds the thread gone). The mark follows what was committed: the check is applied again
      // when another write of its batch fails on its own account (group-commit.ts), and rolled back with the batch
      // when the storage refuses it; a mark left by either read as gone until the node restarted.
      let marked = false;
      const unmark = () => {
        if (marked) deleting.delete(threadId);
        marked = false;
      };
      let outcome: DeletedThread | null;
      try {
        outcome = await commits.run(
          (): DeletedThread | null => {
            unmark();
            if (deleting.has(threadId) || !threadOf.get(threadId, userId)) return 'missing';
            if (unfinishedIn.get(threadId)) return 'busy';
            deleting.add(threadId);
            marked = true;
            return null;
          },
          { request: true },
        );
      } catch (err) {
        unmark();
        throw err;
      }
      if (outcome) return outcome;
      try {
        // Request writes: the storage failing fails the DELETE (DB_UNAVAILABLE) rather than keep it waiting for as
        // long as the storage fails; each commit is whole, so the count stays exact and a retry finishes the thread.
        while (await commits.run(() => deleteChunk(userId, threadId), { request: true }));
        await commits.run(
          () => {
            deleteRunsOf.run(threadId);
            deleteThreadRow.run(threadId);
          },
          { request: true },
        );
        return 'deleted';
      } finally {
        unmark();
      }
    },

    // Marked only once the thread is known to be the user's (its check): the user needs no comparing here.
    isDeleting: (_userId: string, threadId: string) => deleting.has(threadId),

    /** SQLite's synchronous level on this connection as it really is (1 NORMAL, 2 FULL). */
    synchronousLevel(): number {
      return db.pragma('synchronous', { simple: true }) as number;
    },

    checkpointer,

    async close(): Promise<void> {
      commits.flushNow();
      const stopped = checkpointer.stop();
      db.close();
      await stopped;
    },
  };
}

export interface SqliteRunWrites extends RunWrites {
  readonly commits: GroupCommit;
  readonly checkpointer: WalCheckpointer;
  /** SQLite's synchronous level on this connection as it really is (1 NORMAL, 2 FULL). */
  synchronousLevel(): number;
  /** Resolves once the WAL checkpoint thread has closed its connection too. */
  close(): Promise<void>;
}
