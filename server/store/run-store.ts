/**
 * The front's persistence: threads, messages, runs and the event log. Every query that takes a user id
 * filters by it, so another user's ids behave exactly like unknown ones.
 *
 * No interactive transactions here: with the SQLite driver adapter every query issued while one is open
 * joins it, and the front serves many requests on one client. Writes that must be atomic are batches.
 */
import type { Db } from '../../prisma/create-client.js';
import type { AgentInput } from '../protocol/cell-messages.js';
import type { ErrorBody } from '../protocol/errors.js';
import type { JsonValue, RunEventEnvelope, RunStatus, TerminalStatus } from '../protocol/events.js';

export interface RunRecord {
  id: string;
  threadId: string;
  userId: string;
  agentName: string;
  input: AgentInput;
  correlationId: string | null;
  requestId: string;
  status: RunStatus;
  error: ErrorBody | null;
  result: JsonValue | null;
  queuedAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  cellId: string | null;
  workerId: number | null;
  attempts: number;
  report: IsolationReport | null;
  /** The run this one replays (POST /v1/runs/:id/replay), or null. */
  replayOf: string | null;
}

/** What Atoll found about a run's isolation (GET /v1/runs/:id shows it). */
export interface IsolationReport {
  leaks: Record<string, number>;
  globals: string[];
  contaminated: boolean;
  recycled: string | null;
  cleanup_ms: number | null;
  restarts: { attempt: number; cell: string | null; reason: string }[];
}

export interface ThreadRecord {
  id: string;
  userId: string;
  title: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface MessageRecord {
  id: number;
  threadId: string;
  runId: string | null;
  role: 'user' | 'assistant' | 'tool';
  content: string;
  status: 'complete' | 'interrupted';
  createdAt: Date;
}

export interface NewRun {
  id: string;
  userId: string;
  /** null: create a new thread with id newThreadId */
  threadId: string | null;
  newThreadId: string;
  agentName: string;
  input: AgentInput;
  correlationId: string | null;
  requestId: string;
  firstEvent: RunEventEnvelope<'message_received'>;
  /** Set when the run replays an earlier run of the same user. */
  replayOf?: string | null;
}

type RunRow = Awaited<ReturnType<Db['run']['findFirst']>> & {};

export function createRunStore(db: Db) {
  function toRun(row: RunRow): RunRecord {
    return {
      id: row.id,
      threadId: row.threadId,
      userId: row.userId,
      agentName: row.agentName,
      input: JSON.parse(row.input) as AgentInput,
      correlationId: row.correlationId,
      requestId: row.requestId,
      status: row.status as RunStatus,
      error: row.errorCode ? ({ code: row.errorCode, message: row.errorMessage ?? '' } as ErrorBody) : null,
      result: row.result === null ? null : (JSON.parse(row.result) as JsonValue),
      queuedAt: row.queuedAt,
      startedAt: row.startedAt,
      finishedAt: row.finishedAt,
      cellId: row.cellId,
      workerId: row.workerId,
      attempts: row.attempts,
      report: row.report ? (JSON.parse(row.report) as IsolationReport) : null,
      replayOf: row.replayOf,
    };
  }

  function eventRow(e: RunEventEnvelope) {
    return { id: e.event_id, runId: e.run_id, seq: e.seq, type: e.type, payload: JSON.stringify(e.payload), timestamp: new Date(e.timestamp) };
  }

  return {
    async ping(): Promise<void> {
      await db.$queryRawUnsafe('SELECT 1');
    },

    async createThread(userId: string, id: string, title: string | null): Promise<ThreadRecord> {
      const [, thread] = await db.$transaction([
        db.user.upsert({ where: { id: userId }, create: { id: userId }, update: {} }),
        db.thread.create({ data: { id, userId, title } }),
      ]);
      return thread;
    },

    async findThread(userId: string, threadId: string): Promise<ThreadRecord | null> {
      return db.thread.findFirst({ where: { id: threadId, userId } });
    },

    async listThreads(userId: string, limit: number, before: Date | null): Promise<ThreadRecord[]> {
      return db.thread.findMany({
        where: { userId, ...(before ? { updatedAt: { lt: before } } : {}) },
        orderBy: [{ updatedAt: 'desc' }, { id: 'desc' }],
        take: limit,
      });
    },

    /** Messages in order, after the cursor (a message id). */
    async listMessages(threadId: string, limit: number, afterId: number): Promise<MessageRecord[]> {
      const rows = await db.message.findMany({ where: { threadId, id: { gt: afterId } }, orderBy: { id: 'asc' }, take: limit });
      return rows as MessageRecord[];
    },

    /** Persists the request before it is acknowledged: user, thread, the user's message, the run, event 1. */
    async acceptRun(r: NewRun): Promise<RunRecord> {
      const threadId = r.threadId ?? r.newThreadId;
      const now = new Date(r.firstEvent.timestamp);
      const [, , , run] = await db.$transaction([
        db.user.upsert({ where: { id: r.userId }, create: { id: r.userId }, update: {} }),
        r.threadId
          ? db.thread.update({ where: { id: r.threadId }, data: { updatedAt: now } })
          : db.thread.create({ data: { id: threadId, userId: r.userId, title: r.input.text.slice(0, 80) || null } }),
        db.message.create({ data: { threadId, runId: r.id, role: 'user', content: r.input.text, createdAt: now } }),
        db.run.create({
          data: {
            id: r.id,
            threadId,
            userId: r.userId,
            agentName: r.agentName,
            input: JSON.stringify(r.input),
            correlationId: r.correlationId,
            requestId: r.requestId,
            status: 'queued',
            queuedAt: now,
            replayOf: r.replayOf ?? null,
          },
        }),
        db.runEvent.create({ data: eventRow(r.firstEvent) }),
      ]);
      return toRun(run);
    },

    async markRunning(runId: string, cellId: string, workerId: number, startedAt: Date, attempts: number): Promise<void> {
      await db.run.update({ where: { id: runId }, data: { status: 'running', cellId, workerId, startedAt, attempts } });
    },

    /** Back to queued after its cell died under it (it will be run again). */
    async markRequeued(runId: string): Promise<void> {
      await db.run.update({ where: { id: runId }, data: { status: 'queued' } });
    },

    async appendEvents(events: RunEventEnvelope[]): Promise<void> {
      if (events.length === 1) await db.runEvent.create({ data: eventRow(events[0]) });
      else if (events.length > 1) await db.runEvent.createMany({ data: events.map(eventRow) });
    },

    /** The terminal write: status, error, result, the agent_completed event and the assistant's message. */
    async finishRun(
      runId: string,
      threadId: string,
      status: TerminalStatus,
      error: ErrorBody | null,
      result: JsonValue | null,
      terminal: RunEventEnvelope<'agent_completed'>,
      report: IsolationReport | null,
      /** What the run streamed before it ended without completing: stored as an interrupted answer. */
      partialText: string,
    ): Promise<void> {
      const finishedAt = new Date(terminal.timestamp);
      const ops = [
        db.runEvent.create({ data: eventRow(terminal) }),
        db.run.update({
          where: { id: runId },
          data: {
            status,
            errorCode: error?.code ?? null,
            errorMessage: error?.message ?? null,
            result: result === null ? null : JSON.stringify(result),
            report: report ? JSON.stringify(report) : null,
            finishedAt,
          },
        }),
      ];
      if (status === 'completed' && result !== null) {
        const content = typeof result === 'string' ? result : JSON.stringify(result);
        ops.push(db.message.create({ data: { threadId, runId, role: 'assistant', content, createdAt: finishedAt } }) as never);
        ops.push(db.thread.update({ where: { id: threadId }, data: { updatedAt: finishedAt } }) as never);
      } else if (status !== 'completed' && partialText.length > 0) {
        ops.push(db.message.create({ data: { threadId, runId, role: 'assistant', content: partialText, status: 'interrupted', createdAt: finishedAt } }) as never);
      }
      await db.$transaction(ops);
    },

    /** The user's run with this correlation id accepted since `since` (idempotency). */
    async findRunByCorrelation(userId: string, correlationId: string, since: number): Promise<RunRecord | null> {
      const row = await db.run.findFirst({ where: { userId, correlationId, queuedAt: { gte: new Date(since) } }, orderBy: { queuedAt: 'asc' } });
      return row ? toRun(row) : null;
    },

    async findRun(userId: string, runId: string): Promise<RunRecord | null> {
      const row = await db.run.findFirst({ where: { id: runId, userId } });
      return row ? toRun(row) : null;
    },

    async listEvents(run: RunRecord, afterSeq: number, limit: number): Promise<RunEventEnvelope[]> {
      const rows = await db.runEvent.findMany({ where: { runId: run.id, seq: { gt: afterSeq } }, orderBy: { seq: 'asc' }, take: limit });
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

export type RunStore = ReturnType<typeof createRunStore>;
