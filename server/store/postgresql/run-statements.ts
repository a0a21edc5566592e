/**
 * The run path's writes on PostgreSQL, batched by statement: whatever a group commit holds (accepted runs,
 * status changes, events, finishes) becomes at most a dozen multi-row statements over unnest() arrays, in an
 * order that respects the foreign keys, instead of a round trip per row. Each statement is idempotent (a batch
 * whose COMMIT was lost is committed again: group-commit.ts), and every timestamp is written as ISO-8601 UTC
 * text, because pg would write a JS Date in the process's local time into TIMESTAMP(3) and Prisma reads it as
 * UTC.
 */
import type { RunEventEnvelope } from '../../../protocol/events.js';
import { answerOf, CorrelationTakenError, RowMissingError, type AcceptedRunRow, type FinishedRunRow } from '../run-writes.js';
import type { Statement } from './group-commit.js';

export type RunWrite =
  | { kind: 'thread'; userId: string; id: string; title: string | null; at: string }
  | { kind: 'accept'; row: AcceptedRunRow }
  | { kind: 'running'; runId: string; cellId: string; workerId: number; startedAt: string; attempts: number }
  | { kind: 'requeued'; runId: string }
  | { kind: 'events'; events: RunEventEnvelope[] }
  | { kind: 'finish'; row: FinishedRunRow };

export const utc = (d: Date | number | string): string => new Date(d).toISOString();

const CORRELATION_KEY = 'Run_userId_correlationId_key';

const SQL = {
  users: 'INSERT INTO "User" ("id", "createdAt") SELECT * FROM unnest($1::text[], $2::timestamp(3)[]) ON CONFLICT ("id") DO NOTHING',
  // A thread id already taken by another user is not silently shared: the upsert returns only rows of this user.
  threads:
    'INSERT INTO "Thread" ("id", "userId", "title", "createdAt", "updatedAt") SELECT v.id, v.u, v.t, v.at, v.at FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamp(3)[]) AS v(id, u, t, at) ' +
    'ON CONFLICT ("id") DO UPDATE SET "id" = EXCLUDED."id" WHERE "Thread"."userId" = EXCLUDED."userId" RETURNING "id"',
  touch: 'UPDATE "Thread" AS t SET "updatedAt" = v.at FROM unnest($1::text[], $2::timestamp(3)[]) AS v(id, at) WHERE t."id" = v.id RETURNING t."id"',
  releaseCorrelations:
    'UPDATE "Run" AS r SET "correlationId" = NULL FROM unnest($1::text[], $2::text[], $3::timestamp(3)[], $4::text[]) AS v(u, c, since, id) ' +
    'WHERE r."userId" = v.u AND r."correlationId" = v.c AND r."queuedAt" < v.since AND r."id" <> v.id',
  runs:
    'INSERT INTO "Run" ("id", "threadId", "userId", "agentName", "input", "correlationId", "requestId", "status", "queuedAt", "attempts", "replayOf") ' +
    "SELECT v.id, v.th, v.u, v.a, v.i, v.c, v.r, 'queued', v.at, 0, v.rp FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::timestamp(3)[], $9::text[]) AS v(id, th, u, a, i, c, r, at, rp) " +
    'ON CONFLICT ("id") DO NOTHING',
  // Ordered by position so message ids follow the order the writes were asked for; one message per run and role.
  messages:
    'INSERT INTO "Message" ("threadId", "runId", "role", "content", "status", "createdAt") ' +
    'SELECT v.th, v.r, v.role, v.content, v.status, v.at FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamp(3)[]) WITH ORDINALITY AS v(th, r, role, content, status, at, ord) ' +
    'WHERE NOT EXISTS (SELECT 1 FROM "Message" AS m WHERE m."runId" = v.r AND m."role" = v.role) ORDER BY v.ord',
  events:
    'INSERT INTO "RunEvent" ("id", "runId", "seq", "type", "payload", "timestamp") SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::timestamp(3)[]) ' +
    'ON CONFLICT ("id") DO NOTHING',
  running:
    'UPDATE "Run" AS r SET "status" = \'running\', "cellId" = v.c, "workerId" = v.w, "startedAt" = v.s, "attempts" = v.a ' +
    'FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamp(3)[], $5::int[]) AS v(id, c, w, s, a) WHERE r."id" = v.id',
  requeued: 'UPDATE "Run" SET "status" = \'queued\' WHERE "id" = ANY($1::text[])',
  finished:
    'UPDATE "Run" AS r SET "status" = v.st, "errorCode" = v.ec, "errorMessage" = v.em, "result" = v.res, "report" = v.rep, "finishedAt" = v.at ' +
    'FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamp(3)[]) AS v(id, st, ec, em, res, rep, at) WHERE r."id" = v.id',
  undoMessages: 'DELETE FROM "Message" WHERE "runId" = ANY($1::text[])',
  undoRuns: 'DELETE FROM "Run" WHERE "id" = ANY($1::text[]) AND "status" = \'queued\'',
  undoThreads: 'DELETE FROM "Thread" AS t WHERE t."id" = ANY($1::text[]) AND NOT EXISTS (SELECT 1 FROM "Run" AS r WHERE r."threadId" = t."id")',
} as const;

/** Column arrays for unnest(): one array per column, filled row by row. */
function columns<N extends number>(n: N): unknown[][] {
  return Array.from({ length: n }, () => []);
}
const statement = (name: keyof typeof SQL, values: unknown[], check?: Statement['check']): Statement => ({ name: `atoll_${name}`, text: SQL[name], values, check });

export function runStatements(items: RunWrite[]): Statement[] {
  const users = new Map<string, string>();
  const threads = columns(4);
  const touches = new Map<string, string>();
  const mustTouch = new Set<string>();
  const newThreads: string[] = [];
  const releases = columns(4);
  const runs = columns(9);
  const messages = columns(6);
  const events = columns(6);
  const out: Statement[] = [];
  // Status changes in the order asked; a run changed twice in one batch starts a new segment (see flushUpdates).
  let running = columns(5);
  let requeued: string[] = [];
  let finished = columns(7);
  let updated = new Set<string>();
  const updates: Statement[] = [];

  const message = (th: string, r: string, role: string, content: string, status: string, at: string) => {
    messages[0]!.push(th), messages[1]!.push(r), messages[2]!.push(role), messages[3]!.push(content), messages[4]!.push(status), messages[5]!.push(at);
  };
  const event = (e: RunEventEnvelope) => {
    events[0]!.push(e.event_id), events[1]!.push(e.run_id), events[2]!.push(e.seq), events[3]!.push(e.type), events[4]!.push(JSON.stringify(e.payload)), events[5]!.push(utc(e.timestamp));
  };
  const touch = (id: string, at: string) => {
    const prior = touches.get(id);
    if (prior === undefined || prior < at) touches.set(id, at);
  };
  const flushUpdates = () => {
    if (running[0]!.length) updates.push(statement('running', running));
    if (requeued.length) updates.push(statement('requeued', [requeued]));
    if (finished[0]!.length) updates.push(statement('finished', finished));
    running = columns(5);
    requeued = [];
    finished = columns(7);
    updated = new Set();
  };
  const update = (runId: string) => {
    if (updated.has(runId)) flushUpdates();
    updated.add(runId);
  };

  for (const item of items) {
    switch (item.kind) {
      case 'thread':
        if (!users.has(item.userId)) users.set(item.userId, item.at);
        threads[0]!.push(item.id), threads[1]!.push(item.userId), threads[2]!.push(item.title), threads[3]!.push(item.at);
        newThreads.push(item.id);
        break;
      case 'accept': {
        const r = item.row;
        const at = utc(r.firstEvent.timestamp);
        const threadId = r.threadId ?? r.newThreadId;
        if (!users.has(r.userId)) users.set(r.userId, at);
        if (r.threadId) {
          touch(r.threadId, at);
          mustTouch.add(r.threadId);
        } else {
          threads[0]!.push(threadId), threads[1]!.push(r.userId), threads[2]!.push(r.inputText.slice(0, 80) || null), threads[3]!.push(at);
          newThreads.push(threadId);
        }
        if (r.correlationId !== null) releases[0]!.push(r.userId), releases[1]!.push(r.correlationId), releases[2]!.push(utc(r.correlationSince)), releases[3]!.push(r.id);
        const row = [r.id, threadId, r.userId, r.agentName, r.input, r.correlationId, r.requestId, at, r.replayOf];
        row.forEach((v, i) => runs[i]!.push(v));
        message(threadId, r.id, 'user', r.inputText, 'complete', at);
        event(r.firstEvent);
        break;
      }
      case 'events':
        item.events.forEach(event);
        break;
      case 'running':
        update(item.runId);
        [item.runId, item.cellId, item.workerId, item.startedAt, item.attempts].forEach((v, i) => running[i]!.push(v));
        break;
      case 'requeued':
        update(item.runId);
        requeued.push(item.runId);
        break;
      case 'finish': {
        const f = item.row;
        const at = utc(f.terminal.timestamp);
        event(f.terminal);
        update(f.runId);
        [f.runId, f.status, f.error?.code ?? null, f.error?.message ?? null, f.result === null ? null : JSON.stringify(f.result), f.report, at].forEach((v, i) => finished[i]!.push(v));
        const answer = answerOf(f);
        if (answer) message(f.threadId, f.runId, 'assistant', answer.content, answer.status, at);
        if (answer?.status === 'complete') touch(f.threadId, at);
        break;
      }
    }
  }
  flushUpdates();

  if (users.size) out.push(statement('users', [[...users.keys()], [...users.values()]]));
  if (threads[0]!.length) {
    out.push(
      statement('threads', threads, (result) => {
        const got = new Set(result.rows.map((r: { id: string }) => r.id));
        const taken = newThreads.find((id) => !got.has(id));
        if (taken) throw new RowMissingError(`thread id ${taken} belongs to another user`);
      }),
    );
  }
  if (touches.size) {
    out.push(
      statement('touch', [[...touches.keys()], [...touches.values()]], (result) => {
        const got = new Set(result.rows.map((r: { id: string }) => r.id));
        const missing = [...mustTouch].find((id) => !got.has(id));
        if (missing) throw new RowMissingError(`thread ${missing} does not exist`);
      }),
    );
  }
  if (releases[0]!.length) out.push(statement('releaseCorrelations', releases));
  if (runs[0]!.length) out.push(statement('runs', runs));
  if (messages[0]!.length) out.push(statement('messages', messages));
  if (events[0]!.length) out.push(statement('events', events));
  out.push(...updates);
  return out;
}

/** Removes what request writes whose COMMIT was lost may have left (group-commit.ts). */
export function undoStatements(items: RunWrite[]): Statement[] {
  const runIds: string[] = [];
  const threadIds: string[] = [];
  for (const item of items) {
    if (item.kind === 'thread') threadIds.push(item.id);
    if (item.kind === 'accept') {
      runIds.push(item.row.id);
      if (!item.row.threadId) threadIds.push(item.row.newThreadId);
    }
  }
  const out: Statement[] = [];
  if (runIds.length) out.push(statement('undoMessages', [runIds]), statement('undoRuns', [runIds]));
  if (threadIds.length) out.push(statement('undoThreads', [threadIds]));
  return out;
}

export const isRequest = (item: RunWrite): boolean => item.kind === 'thread' || item.kind === 'accept';

/**
 * A write's own fault: integrity constraint violations (SQLSTATE class 23), data exceptions (class 22: a value
 * the column cannot take, such as text with NUL or a number out of range) and missing rows. The batch is then
 * retried write by write, so one write's bad value fails it alone, never the other runs of its commit.
 */
export const isWriteError = (err: unknown): boolean => err instanceof RowMissingError || /^2[23]/.test(String((err as { code?: unknown })?.code ?? ''));

export function explain(item: RunWrite, err: unknown): unknown {
  const e = err as { code?: string; constraint?: string };
  if (item.kind === 'accept' && item.row.correlationId !== null && e?.code === '23505' && e.constraint === CORRELATION_KEY) {
    return new CorrelationTakenError(item.row.userId, item.row.correlationId);
  }
  return err;
}
