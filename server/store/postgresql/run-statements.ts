/**
 * The run path's writes on PostgreSQL, batched: whatever a group commit holds (accepted runs, status changes,
 * events, finishes) becomes one statement over unnest() arrays (two when a run brings a correlation id), not a
 * round trip per row or per table. Each statement is idempotent (a batch whose COMMIT was lost is committed
 * again: group-commit.ts), and every timestamp is written as ISO-8601 UTC text, because pg would write a JS Date
 * in the process's local time into TIMESTAMP(3) and Prisma reads it as UTC.
 */
import type { RunEventEnvelope } from '../../../protocol/events.js';
import { answerOf, CorrelationTakenError, FencedError, RowMissingError, type AcceptedRunRow, type FinishedRunRow } from '../run-writes.js';
import type { Statement } from './group-commit.js';

export type RunWrite =
  | { kind: 'thread'; userId: string; id: string; title: string | null; at: string }
  | { kind: 'accept'; row: AcceptedRunRow }
  | { kind: 'running'; runId: string; cellId: string; workerId: number; startedAt: string; attempts: number; owner: string | null }
  | { kind: 'requeued'; runId: string; owner: string | null }
  | { kind: 'events'; events: RunEventEnvelope[]; owner: string | null }
  | { kind: 'finish'; row: FinishedRunRow; owner: string | null };

/**
 * Session settings of the connection that runs these statements (postgresql-backend.ts). They are prepared
 * (named), and PostgreSQL plans a prepared statement once for all from the sixth execution on. On a fresh
 * database that happens while the tables hold a handful of rows, so the cached plan scans whole tables (Run,
 * Message, Thread) and every commit then costs time in proportion to the table until autovacuum's first
 * ANALYZE replans it (measured: postgres CPU per run 2.6 → 1.1 ms over 1,500 runs). Every statement here is a
 * keyed lookup with an index behind it, so table scans are ruled out and the generic plan is always used.
 * (Startup options, like apply-migrations.ts's session lock, need a direct connection, not PgBouncer's transaction mode.)
 */
export const WRITE_CONNECTION_OPTIONS = '-c enable_seqscan=off -c plan_cache_mode=force_generic_plan';

export const utc = (d: Date | number | string): string => new Date(d).toISOString();

const CORRELATION_KEY = 'Run_userId_correlationId_key';

/**
 * A batch's writes as ONE statement: data-modifying CTEs, one per table, each over unnest() arrays (empty ones
 * when the batch has none of that kind), then the runs' status changes, so a commit costs this statement whatever
 * it holds, not BEGIN, a statement per table and kind of change, COMMIT (7-10 statements).
 * On a busy machine, or with the database on another host, a commit waits for its round trips more than for its
 * rows. The sub-statements share one snapshot and must not touch the same row twice (PostgreSQL would keep only
 * one change), hence:
 * - a run's status changes in one batch are folded into one row of the final UPDATE (the last of each column group),
 * - a change to a row the batch also inserts goes into a second execution (runStatements),
 * - a new thread whose id another user's thread holds is refused by the statement itself: `taken` inserts
 *   that id again with no user, which violates NOT NULL (a write's own fault, class 23, like the foreign
 *   keys), so the batch needs no check of its result and is all or nothing on its own,
 * - the foreign keys are checked at the end of the statement, so a new user, thread, run and its rows can
 *   arrive together; a run continuing a thread that is not there fails them.
 * explain() turns both into RowMissingError.
 * - a write of a run held by a node's lease (several nodes: server/cluster/) names that lease (its owner); `fence`
 *   inserts a lease row with no id when the run's owner is another (taken over), which violates NOT NULL: the
 *   write fails alone, as FencedError, and the final UPDATE skips such a row too. Writes without an owner (one
 *   node, an accept) are not fenced. The check locks the rows it reads (FOR SHARE): a node stops writing before its lease can expire by
 *   its own clock (server/cluster/node-lease.ts), but its group commit keeps acknowledged writes and sends them again
 *   once the database answers, which can be while a takeover holds the rows; read from the statement's snapshot, the
 *   owner was the old one, the write reported success, its events entered the log, and its status change was
 *   dropped by the final UPDATE's own check (helper-78). Locked, the owner read is the takeover's. Releasing a correlation id updates older runs that the final UPDATE
 * could be finishing: it stays a statement of its own, before (and is rare: runs with a correlation id).
 */
const BATCH =
  'WITH users AS (INSERT INTO "User" ("id", "createdAt") SELECT * FROM unnest($1::text[], $2::timestamp(3)[]) ON CONFLICT ("id") DO NOTHING), ' +
  'threads AS (INSERT INTO "Thread" ("id", "userId", "title", "createdAt", "updatedAt") SELECT v.id, v.u, v.t, v.at, v.at FROM unnest($3::text[], $4::text[], $5::text[], $6::timestamp(3)[]) AS v(id, u, t, at) ' +
  'ON CONFLICT ("id") DO NOTHING), ' +
  // A new thread id that another user holds already, or that another user asks for in the same batch.
  'taken AS (INSERT INTO "Thread" ("id", "userId", "createdAt", "updatedAt") SELECT v.id, NULL, v.at, v.at FROM unnest($3::text[], $4::text[], $6::timestamp(3)[]) AS v(id, u, at) ' +
  'WHERE EXISTS (SELECT 1 FROM "Thread" AS t WHERE t."id" = v.id AND t."userId" <> v.u) OR EXISTS (SELECT 1 FROM unnest($3::text[], $4::text[]) AS o(id, u) WHERE o.id = v.id AND o.u <> v.u)), ' +
  'touched AS (UPDATE "Thread" AS t SET "updatedAt" = v.at FROM unnest($7::text[], $8::timestamp(3)[]) AS v(id, at) WHERE t."id" = v.id RETURNING t."id"), ' +
  'runs AS (INSERT INTO "Run" ("id", "threadId", "userId", "agentName", "input", "correlationId", "requestId", "status", "queuedAt", "attempts", "replayOf") ' +
  "SELECT v.id, v.th, v.u, v.a, v.i, v.c, v.r, 'queued', v.at, 0, v.rp FROM unnest($9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::timestamp(3)[], $17::text[]) AS v(id, th, u, a, i, c, r, at, rp) " +
  'ON CONFLICT ("id") DO NOTHING), ' +
  // Ordered by position so message ids follow the order the writes were asked for; one message per run and role.
  // "size": length() of the text, the measure pages cut by size read (prisma-run-store.ts).
  'messages AS (INSERT INTO "Message" ("threadId", "runId", "role", "content", "size", "status", "createdAt") ' +
  'SELECT v.th, v.r, v.role, v.content, length(v.content), v.status, v.at FROM unnest($18::text[], $19::text[], $20::text[], $21::text[], $22::text[], $23::timestamp(3)[]) WITH ORDINALITY AS v(th, r, role, content, status, at, ord) ' +
  'WHERE NOT EXISTS (SELECT 1 FROM "Message" AS m WHERE m."runId" = v.r AND m."role" = v.role) ORDER BY v.ord RETURNING "runId", "role"), ' +
  'events AS (INSERT INTO "RunEvent" ("id", "runId", "seq", "type", "payload", "size", "timestamp") ' +
  'SELECT v.id, v.r, v.s, v.t, v.p, length(v.p), v.at FROM unnest($24::text[], $25::text[], $26::int[], $27::text[], $28::text[], $29::timestamp(3)[]) AS v(id, r, s, t, p, at) ' +
  'ON CONFLICT ("id") DO NOTHING RETURNING "id"), ' +
  // What each user holds (UserStorage): the bytes of the events and messages this execution inserted (RETURNING: a
  // batch committed again after a lost COMMIT inserts nothing twice, so it counts nothing twice), one row per user,
  // locked in user order. $45: each event's user, $46: each message's. After the threads the batch touches (it reads
  // `touched`, which runs first): a thread's delete (run-writes.ts) locks the thread, then the user's row; a batch
  // continuing that thread that locked the user's row first, then waited for the thread, deadlocked with it.
  'stored AS (INSERT INTO "UserStorage" ("userId", "bytes") SELECT x.u, sum(x.b) FROM (' +
  'SELECT v.u, octet_length(v.p) AS b FROM unnest($24::text[], $45::text[], $28::text[]) AS v(id, u, p) WHERE v.id IN (SELECT "id" FROM events) ' +
  'UNION ALL SELECT v.u, octet_length(v.content) FROM unnest($19::text[], $20::text[], $21::text[], $46::text[]) AS v(r, role, content, u) WHERE (v.r, v.role) IN (SELECT "runId", "role" FROM messages)' +
  ') AS x WHERE (SELECT count(*) FROM touched) >= 0 GROUP BY x.u ORDER BY x.u ON CONFLICT ("userId") DO UPDATE SET "bytes" = "UserStorage"."bytes" + excluded."bytes"), ' +
  // The owned rows are locked (FOR SHARE) before their owner is compared: a takeover holding them is waited for, and
  // the owner it leaves is what is compared, not the statement's snapshot (helper-78). Only rows a lease writes (one
  // node writes none). Locked by a plain scan of their ids: locked inside the join with the written rows, they were
  // still compared with the owner from before the takeover (tests/postgresql/shared-queue.test.ts).
  // Every owned run the batch writes, locked first and in id order, as a takeover and a give-back lock runs (ORDER BY
  // "id" FOR UPDATE): the UPDATE below waits for this (its one-time filter), and the fence runs after it (an
  // unreferenced sub-statement). Locked as each of those came to it, a batch changing run b and writing an event of
  // run a took b, then a, and deadlocked with a takeover of both (helper-83).
  'owned AS (SELECT l."id" FROM "Run" AS l WHERE l."id" = ANY(ARRAY(SELECT v.r FROM unnest($25::text[], $43::text[]) AS v(r, o) WHERE v.o IS NOT NULL ' +
  'UNION ALL SELECT v.r FROM unnest($30::text[], $44::text[]) AS v(r, o) WHERE v.o IS NOT NULL)) ORDER BY l."id" FOR NO KEY UPDATE), ' +
  'fence AS (INSERT INTO "Node" ("id", "nodeId", "startedAt", "expiresAt") SELECT NULL, f.r, now(), now() FROM ' +
  '(SELECT v.r, v.o FROM unnest($25::text[], $43::text[]) AS v(r, o) WHERE v.o IS NOT NULL UNION ALL SELECT v.r, v.o FROM unnest($30::text[], $44::text[]) AS v(r, o) WHERE v.o IS NOT NULL) AS f ' +
  'JOIN (SELECT l."id", l."owner" FROM "Run" AS l WHERE l."id" = ANY(ARRAY(SELECT v.r FROM unnest($25::text[], $43::text[]) AS v(r, o) WHERE v.o IS NOT NULL ' +
  'UNION ALL SELECT v.r FROM unnest($30::text[], $44::text[]) AS v(r, o) WHERE v.o IS NOT NULL)) FOR SHARE) AS x ON x."id" = f.r WHERE x."owner" IS DISTINCT FROM f.o) ' +
  'UPDATE "Run" AS r SET "status" = v.st, ' +
  '"cellId" = CASE WHEN v.ran THEN v.c ELSE r."cellId" END, "workerId" = CASE WHEN v.ran THEN v.w ELSE r."workerId" END, ' +
  '"startedAt" = CASE WHEN v.ran THEN v.s ELSE r."startedAt" END, "attempts" = CASE WHEN v.ran THEN v.a ELSE r."attempts" END, ' +
  '"errorCode" = CASE WHEN v.fin THEN v.ec ELSE r."errorCode" END, "errorMessage" = CASE WHEN v.fin THEN v.em ELSE r."errorMessage" END, ' +
  '"result" = CASE WHEN v.fin THEN v.res ELSE r."result" END, "report" = CASE WHEN v.fin THEN v.rep ELSE r."report" END, ' +
  '"finishedAt" = CASE WHEN v.fin THEN v.fa ELSE r."finishedAt" END ' +
  'FROM unnest($30::text[], $31::text[], $32::bool[], $33::text[], $34::int[], $35::timestamp(3)[], $36::int[], $37::bool[], $38::text[], $39::text[], $40::text[], $41::text[], $42::timestamp(3)[], $44::text[]) ' +
  'AS v(id, st, ran, c, w, s, a, fin, ec, em, res, rep, fa, ow) WHERE r."id" = v.id AND (v.ow IS NULL OR r."owner" IS NOT DISTINCT FROM v.ow) AND (SELECT count(*) FROM owned) >= 0';

const SQL = {
  batch: BATCH,
  releaseCorrelations:
    'UPDATE "Run" AS r SET "correlationId" = NULL FROM unnest($1::text[], $2::text[], $3::timestamp(3)[], $4::text[]) AS v(u, c, since, id) ' +
    'WHERE r."userId" = v.u AND r."correlationId" = v.c AND r."queuedAt" < v.since AND r."id" <> v.id',
  // Each takes what it removes off its user's stored bytes, as the batch added it (events go with their runs).
  undoMessages:
    'WITH gone AS (DELETE FROM "Message" WHERE "runId" = ANY($1::text[]) RETURNING "threadId", octet_length("content") AS b) ' +
    'UPDATE "UserStorage" AS s SET "bytes" = s."bytes" - x.b FROM (SELECT t."userId" AS u, sum(g.b) AS b FROM gone AS g JOIN "Thread" AS t ON t."id" = g."threadId" GROUP BY t."userId") AS x WHERE s."userId" = x.u',
  undoRuns:
    'WITH gone AS (DELETE FROM "Run" WHERE "id" = ANY($1::text[]) AND "status" = \'queued\' RETURNING "id", "userId") ' +
    'UPDATE "UserStorage" AS s SET "bytes" = s."bytes" - x.b FROM (SELECT g."userId" AS u, sum(octet_length(e."payload")) AS b FROM gone AS g JOIN "RunEvent" AS e ON e."runId" = g."id" GROUP BY g."userId") AS x WHERE s."userId" = x.u',
  undoThreads: 'DELETE FROM "Thread" AS t WHERE t."id" = ANY($1::text[]) AND NOT EXISTS (SELECT 1 FROM "Run" AS r WHERE r."threadId" = t."id")',
} as const;

/** Column arrays for unnest(): one array per column, filled row by row. */
function columns<N extends number>(n: N): unknown[][] {
  return Array.from({ length: n }, () => []);
}
const statement = (name: keyof typeof SQL, values: unknown[]): Statement => ({ name: `atoll_${name}`, text: SQL[name], values });

const byKey = ([a]: [string, unknown], [b]: [string, unknown]): number => (a < b ? -1 : a > b ? 1 : 0);

/** A run's status changes in one batch, folded: the last status, and the last of each group of columns. */
interface RunUpdate {
  status: string;
  owner: string | null;
  running: [cellId: string, workerId: number, startedAt: string, attempts: number] | null;
  finished: [errorCode: string | null, errorMessage: string | null, result: string | null, report: string | null, finishedAt: string] | null;
}

export function runStatements(items: RunWrite[]): Statement[] {
  const users = new Map<string, string>();
  const threads = columns(4);
  const touches = new Map<string, string>();
  const newThreads: string[] = [];
  const releases = columns(4);
  const runs = columns(9);
  const messages = columns(6);
  const events = columns(6);
  /** Each event's and each message's user ($45, $46): whose stored bytes they add to. */
  const [eventUsers, messageUsers]: [string[], string[]] = [[], []];
  /** The lease each event's write names ($43; null: not fenced). */
  const eventOwners: (string | null)[] = [];
  const updates = new Map<string, RunUpdate>();

  const message = (u: string, th: string, r: string, role: string, content: string, status: string, at: string) => {
    messageUsers.push(u);
    messages[0]!.push(th), messages[1]!.push(r), messages[2]!.push(role), messages[3]!.push(content), messages[4]!.push(status), messages[5]!.push(at);
  };
  const event = (e: RunEventEnvelope, owner: string | null) => {
    eventOwners.push(owner);
    eventUsers.push(e.user_id);
    events[0]!.push(e.event_id), events[1]!.push(e.run_id), events[2]!.push(e.seq), events[3]!.push(e.type), events[4]!.push(JSON.stringify(e.payload)), events[5]!.push(utc(e.timestamp));
  };
  const touch = (id: string, at: string) => {
    const prior = touches.get(id);
    if (prior === undefined || prior < at) touches.set(id, at);
  };
  const update = (runId: string, change: Partial<RunUpdate> & { status: string; owner: string | null }) => {
    const prior = updates.get(runId) ?? { status: change.status, owner: change.owner, running: null, finished: null };
    updates.set(runId, { status: change.status, owner: change.owner, running: change.running ?? prior.running, finished: change.finished ?? prior.finished });
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
        if (r.threadId) touch(r.threadId, at);
        else {
          threads[0]!.push(threadId), threads[1]!.push(r.userId), threads[2]!.push(r.inputText.slice(0, 80) || null), threads[3]!.push(at);
          newThreads.push(threadId);
        }
        if (r.correlationId !== null) releases[0]!.push(r.userId), releases[1]!.push(r.correlationId), releases[2]!.push(utc(r.correlationSince)), releases[3]!.push(r.id);
        const row = [r.id, threadId, r.userId, r.agentName, r.input, r.correlationId, r.requestId, at, r.replayOf];
        row.forEach((v, i) => runs[i]!.push(v));
        message(r.userId, threadId, r.id, 'user', r.inputText, 'complete', at);
        event(r.firstEvent, null);
        break;
      }
      case 'events':
        for (const e of item.events) event(e, item.owner);
        break;
      case 'running':
        update(item.runId, { status: 'running', owner: item.owner, running: [item.cellId, item.workerId, item.startedAt, item.attempts] });
        break;
      case 'requeued':
        update(item.runId, { status: 'queued', owner: item.owner });
        break;
      case 'finish': {
        const f = item.row;
        const at = utc(f.terminal.timestamp);
        event(f.terminal, item.owner);
        update(f.runId, { status: f.status, owner: item.owner, finished: [f.error?.code ?? null, f.error?.message ?? null, f.result === null ? null : JSON.stringify(f.result), f.report, at] });
        const answer = answerOf(f);
        if (answer) message(f.terminal.user_id, f.threadId, f.runId, 'assistant', answer.content, answer.status, at);
        if (answer?.status === 'complete') touch(f.threadId, at);
        break;
      }
    }
  }

  // A change to a row this batch inserts would not see it from a sibling sub-statement (one snapshot): such
  // changes (a run accepted and started in the same turn, a thread created and continued) run as a second
  // execution of the same statement, after the first. The server itself waits for an accept before the next
  // change of its run, so a batch is one statement in practice.
  const acceptedRuns = new Set(runs[0] as string[]);
  const createdThreads = new Set(newThreads);
  const updatedNow = columns(14);
  const updatedAfter = columns(14);
  // Rows are locked in the order of the arrays: by id, as every other statement that locks several runs (a takeover, a
  // give-back: `ORDER BY "id" FOR UPDATE`) and the fence's index scan do, so two of them never wait on each other in a
  // cycle (a deadlock, which PostgreSQL breaks by rolling one back after deadlock_timeout).
  for (const [id, u] of [...updates].sort(byKey)) {
    const row = [id, u.status, u.running !== null, ...(u.running ?? [null, null, null, null]), u.finished !== null, ...(u.finished ?? [null, null, null, null, null]), u.owner];
    row.forEach((v, i) => (acceptedRuns.has(id) ? updatedAfter : updatedNow)[i]!.push(v));
  }
  const [touchNow, touchAfter] = [columns(2), columns(2)];
  for (const [id, at] of [...touches].sort(byKey)) [id, at].forEach((v, i) => (createdThreads.has(id) ? touchAfter : touchNow)[i]!.push(v));

  const out: Statement[] = [];
  if (releases[0]!.length) out.push(statement('releaseCorrelations', releases));
  // $1-$42 in the order of the statement's sub-statements; the owners ($43 events', $44 updates'), then the users ($45 events', $46 messages').
  const [updateColumns, updateOwners] = [updatedNow.slice(0, 13), updatedNow[13]!];
  out.push(statement('batch', [[...users.keys()], [...users.values()], ...threads, ...touchNow, ...runs, ...messages, ...events, ...updateColumns, eventOwners, updateOwners, eventUsers, messageUsers]));
  if (updatedAfter[0]!.length > 0 || touchAfter[0]!.length > 0) {
    const none = (n: number) => Array.from({ length: n }, () => []);
    out.push(statement('batch', [...none(6), ...touchAfter, ...none(9 + 6 + 6), ...updatedAfter.slice(0, 13), [], updatedAfter[13]!, [], []]));
  }
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

/** An accept's rows that name its thread: a missing thread fails these foreign keys (checked at the statement's end). */
const THREAD_KEYS = new Set(['Run_threadId_fkey', 'Message_threadId_fkey']);

/** The thread a write creates, if any. */
const newThreadOf = (item: RunWrite): string | null => (item.kind === 'thread' ? item.id : item.kind === 'accept' && item.row.threadId === null ? item.row.newThreadId : null);

export function explain(item: RunWrite, err: unknown): unknown {
  const e = err as { code?: string; constraint?: string; table?: string; column?: string };
  if (item.kind === 'accept' && item.row.threadId !== null && e?.code === '23503' && THREAD_KEYS.has(e.constraint ?? '')) {
    return new RowMissingError(`thread ${item.row.threadId} does not exist`);
  }
  // `taken` in BATCH: the id is another user's thread.
  const created = newThreadOf(item);
  if (created !== null && e?.code === '23502' && e.table === 'Thread' && e.column === 'userId') return new RowMissingError(`thread id ${created} belongs to another user`);
  // `fence` in BATCH: the run's lease is no longer this write's.
  if (item.kind !== 'accept' && item.kind !== 'thread' && e?.code === '23502' && e.table === 'Node') return new FencedError(`the run is no longer held by this node's lease`);
  if (item.kind === 'accept' && item.row.correlationId !== null && e?.code === '23505' && e.constraint === CORRELATION_KEY) {
    return new CorrelationTakenError(item.row.userId, item.row.correlationId);
  }
  return err;
}
