/**
 * The RunStore (store.ts) over Prisma, for every database: threads, messages, runs and the event log. Every
 * query that takes a user id filters by it, so another user's ids behave exactly like unknown ones.
 *
 * Reads go through the database's Prisma client. Writes go through its RunWrites (run-writes.ts: batched
 * statements, group commit): each write's promise settles once it is committed, so a read issued after it
 * sees it.
 */
import type { Db } from '../../prisma/client-type.js';
import type { RunEventEnvelope } from '../../protocol/events.js';
import { acceptedRecordOf, acceptedRowOf, runRecordOf } from './run-record.js';
import { storableText, type RunWrites } from './run-writes.js';
import type { MessageRecord, NewRun, RunRecord, RunStore, ThreadCursor, ThreadRecord } from './store.js';

type SizeRow = { key: number; size: number };

/**
 * For a page cut by size: the sizes are read first (a run's event may be MAX_EVENT_BYTES, a message MAX_RESULT_BYTES,
 * and a page of 1,000 events of 64 KiB was read and parsed whole, 64 MB, before its caller cut it at 1 MiB), and
 * the rows read up to the one where they pass `maxBytes`, at least two: a caller cutting at `maxBytes` then always
 * cuts inside what it got, and so can tell that more follow. The sizes are the rows' stored `size`, written with
 * the row: length() of the text, which read every row's whole text when asked here. It counts characters, never
 * more than the bytes the caller counts, so the caller's cut still falls inside. The key of the last row to read;
 * none: no rows.
 */
function lastKeyWithin(sizes: SizeRow[], maxBytes: number): number | undefined {
  let total = 0;
  let last: number | undefined;
  for (const [i, row] of sizes.entries()) {
    if (i >= 2 && total > maxBytes) break;
    total += row.size;
    last = row.key;
  }
  return last;
}

export function createPrismaRunStore(db: Db, writes: RunWrites): RunStore {
  const toRun = runRecordOf;

  return {
    async ping(): Promise<void> {
      await db.$queryRawUnsafe('SELECT 1');
    },

    async createThread(userId: string, id: string, title: string | null): Promise<ThreadRecord> {
      const now = new Date();
      await writes.createThread(userId, id, title, now);
      return { id, userId, title, createdAt: now, updatedAt: now };
    },

    async findThread(userId: string, threadId: string): Promise<ThreadRecord | null> {
      // A thread being deleted here is gone already, for reads and for accepts.
      if (writes?.isDeleting(userId, threadId)) return null;
      return db.thread.findFirst({ where: { id: threadId, userId } });
    },

    async listThreads(userId: string, limit: number, before: ThreadCursor | null): Promise<ThreadRecord[]> {
      // Past the cursor in (updatedAt, id) order: threads sharing its millisecond are not skipped. The `lte` says
      // again what the OR implies: without it the OR hid the range from the (userId, updatedAt) index, and SQLite
      // walked every thread of the user newer than the cursor for each page (~30 ms of the front's event loop per
      // page 100,000 threads deep; the whole history's paging grew with its square).
      const after = !before
        ? {}
        : before.threadId === null
          ? { updatedAt: { lt: before.updatedAt } }
          : { updatedAt: { lte: before.updatedAt }, OR: [{ updatedAt: { lt: before.updatedAt } }, { updatedAt: before.updatedAt, id: { lt: before.threadId } }] };
      return db.thread.findMany({
        where: { userId, ...after },
        orderBy: [{ updatedAt: 'desc' }, { id: 'desc' }],
        take: limit,
      });
    },

    /** Messages in order, after the cursor (a message id). */
    async listMessages(threadId: string, limit: number, afterId: number, maxBytes?: number): Promise<MessageRecord[]> {
      let lastId: number | undefined;
      if (maxBytes !== undefined) {
        const sizes = await db.message.findMany({ where: { threadId, id: { gt: afterId } }, orderBy: { id: 'asc' }, take: limit, select: { id: true, size: true } });
        lastId = lastKeyWithin(sizes.map((m) => ({ key: m.id, size: m.size })), maxBytes);
        if (lastId === undefined) return [];
      }
      const id = lastId === undefined ? { gt: afterId } : { gt: afterId, lte: lastId };
      const rows = await db.message.findMany({ where: { threadId, id }, orderBy: { id: 'asc' }, take: limit });
      return rows as MessageRecord[];
    },

    async messagesFitting(threadId: string, afterId: number, offset: number, limit: number, maxBytes: number): Promise<number> {
      const sizes = await db.message.findMany({ where: { threadId, id: { gt: afterId } }, orderBy: { id: 'asc' }, skip: offset, take: limit, select: { size: true } });
      let total = 0;
      let fitting = 0;
      for (const { size } of sizes) {
        if (fitting >= 1 && total + size > maxBytes) break;
        total += size;
        fitting++;
      }
      return fitting;
    },

    /** Persists the request before it is acknowledged: user, thread, the user's message, the run, event 1. */
    deleteThread: (userId, threadId) => writes.deleteThread(userId, threadId),

    storedBytes: (userId) => writes.storedBytes(userId),

    async acceptRun(r: NewRun): Promise<RunRecord> {
      await writes.acceptRun(acceptedRowOf(r));
      return acceptedRecordOf(r);
    },

    markRunning(runId: string, cellId: string, workerId: number, startedAt: Date, attempts: number, owner?: string | null): Promise<void> {
      return writes.markRunning(runId, cellId, workerId, startedAt, attempts, owner);
    },

    /** Back to queued after its cell died under it (it will be run again). */
    markRequeued(runId: string, owner?: string | null): Promise<void> {
      return writes.markRequeued(runId, owner);
    },

    appendEvents(events: RunEventEnvelope[], owner?: string | null): Promise<void> {
      return events.length === 0 ? Promise.resolve() : writes.appendEvents(events, owner);
    },

    /** The terminal write: status, error, result, the agent_completed event and the assistant's message. */
    finishRun(runId, threadId, status, error, result, terminal, report, partialText, owner) {
      const stored = error && { ...error, message: storableText(error.message) };
      return writes.finishRun({ runId, threadId, status, error: stored, result, terminal, report: report ? JSON.stringify(report) : null, partialText }, owner);
    },

    /** The user's run with this correlation id accepted since `since` (idempotency). */
    async findRunByCorrelation(userId: string, correlationId: string, since: number): Promise<RunRecord | null> {
      const row = await db.run.findFirst({ where: { userId, correlationId, queuedAt: { gte: new Date(since) } }, orderBy: { queuedAt: 'asc' } });
      return row ? toRun(row) : null;
    },

    async findRun(userId: string, runId: string): Promise<RunRecord | null> {
      const row = await db.run.findFirst({ where: { id: runId, userId } });
      // A run of a thread being deleted here is gone with it (its events are going first).
      return row && !writes?.isDeleting(userId, row.threadId) ? toRun(row) : null;
    },

    async listRunsSince(userId: string, since: Date, limit: number): Promise<RunRecord[]> {
      const rows = await db.run.findMany({ where: { userId, queuedAt: { gte: since } }, orderBy: [{ queuedAt: 'desc' }, { id: 'desc' }], take: limit });
      return rows.reverse().map(toRun);
    },

    async listEvents(run: RunRecord, afterSeq: number, limit: number, maxBytes?: number): Promise<RunEventEnvelope[]> {
      let lastSeq: number | undefined;
      if (maxBytes !== undefined) {
        const sizes = await db.runEvent.findMany({ where: { runId: run.id, seq: { gt: afterSeq } }, orderBy: { seq: 'asc' }, take: limit, select: { seq: true, size: true } });
        lastSeq = lastKeyWithin(sizes.map((e) => ({ key: e.seq, size: e.size })), maxBytes);
        if (lastSeq === undefined) return [];
      }
      const seq = lastSeq === undefined ? { gt: afterSeq } : { gt: afterSeq, lte: lastSeq };
      const rows = await db.runEvent.findMany({ where: { runId: run.id, seq }, orderBy: { seq: 'asc' }, take: limit });
      return rows.map(
        (row) =>
          ({
            type: row.type,
            event_id: row.id,
            seq: row.seq,
            run_id: run.id,
            thread_id: run.threadId,
            user_id: run.userId,
            agent_name: run.agentName,
            timestamp: row.timestamp.toISOString(),
            payload: JSON.parse(row.payload),
          }) as RunEventEnvelope,
      );
    },

    /** Runs a previous process left unfinished, with the last seq each logged. */
    async findUnfinishedRuns(): Promise<{ run: RunRecord; lastSeq: number }[]> {
      const rows = await db.run.findMany({ where: { status: { in: ['queued', 'running'] } }, orderBy: { queuedAt: 'asc' } });
      const out: { run: RunRecord; lastSeq: number }[] = [];
      for (const row of rows) {
        const last = await db.runEvent.findFirst({ where: { runId: row.id }, orderBy: { seq: 'desc' }, select: { seq: true } });
        out.push({ run: toRun(row), lastSeq: last?.seq ?? 0 });
      }
      return out;
    },
  };
}

