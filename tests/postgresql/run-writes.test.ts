/**
 * The run path's batched writes on a real PostgreSQL (server/store/postgresql/run-writes.ts over group-commit.ts
 * and run-statements.ts), read back through Prisma as the front reads them: many runs in one turn, a run changed
 * several times in one batch, a faulty write among good ones, concurrent accepts of one correlation id, a batch
 * committed twice, a writer in another time zone; and what they do when the database goes away (a TCP proxy in
 * between): requests refused, acknowledged writes kept, a COMMIT lost in flight, a silent partition.
 * Prisma's query compiler does not load inside jest's module sandbox: reads through Prisma run in a plain Node
 * child process (readThroughPrisma).
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { CodedError } from '../../protocol/errors';
import type { RunEventEnvelope } from '../../protocol/events';
import { migrationsFolder } from '../../server/store/migrations';
import { applyMigrations } from '../../server/store/postgresql/apply-migrations';
import { createBackends, type Backends } from '../../server/store/postgresql/backends';
import { createPool, writePoolConfig } from '../../server/store/postgresql/pools';
import { runStatements, WRITE_CONNECTION_OPTIONS, type RunWrite } from '../../server/store/postgresql/run-statements';
import { createPgRunWrites, type PgRunWrites } from '../../server/store/postgresql/run-writes';
import { CorrelationTakenError, RowMissingError, type AcceptedRunRow, type FinishedRunRow } from '../../server/store/run-writes';
import { eventually } from '../helpers/client';
import { holdCommits } from '../helpers/held-commits';
import { testDatabase, type TestDatabase } from '../helpers/pg-database';
import { aroundQueries } from '../helpers/pool-queries';
import { ROOT } from '../helpers/server';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy';
import { storedAndHeld } from '../helpers/test-database';

const run = promisify(execFile);
const quiet = { info: () => undefined, warn: () => undefined };

let db: TestDatabase;
const pools: pg.Pool[] = [];

beforeAll(async () => {
  db = await testDatabase('run_writes');
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  await applyMigrations(c, migrationsFolder('postgresql'));
  await c.end();
});
afterAll(async () => {
  await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
  await db?.drop();
});

function writer(url = db.url, overrides: pg.PoolConfig = {}, log = quiet, backends?: Backends): PgRunWrites {
  const pool = createPool({ ...writePoolConfig(url, 1), ...overrides }, log);
  pools.push(pool);
  return createPgRunWrites(pool, log, backends);
}

/** Reads through Prisma's PostgreSQL client in a plain Node process (TZ as given), as the front reads. */
async function readThroughPrisma(body: string, env: Record<string, string> = {}): Promise<any> {
  const script = `
    const pg = require('pg');
    const { openReadClient } = require(${JSON.stringify(path.join(ROOT, 'dist/server/store/postgresql/prisma-client.js'))});
    const { createPrismaRunStore } = require(${JSON.stringify(path.join(ROOT, 'dist/server/store/prisma-run-store.js'))});
    const pool = new pg.Pool({ connectionString: ${JSON.stringify(db.url)}, max: 1 });
    const { prisma } = openReadClient(pool);
    const store = createPrismaRunStore(prisma, null);
    (${body})(store, prisma).then(async (out) => { process.stdout.write(JSON.stringify(out)); await prisma.$disconnect(); await pool.end(); });
  `;
  const { stdout } = await run(process.execPath, ['-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH ?? '', TZ: 'UTC', ...env } });
  return JSON.parse(stdout);
}

let ids = 0;
const uid = (what: string) => `${what}-${++ids}-${Math.random().toString(36).slice(2, 8)}`;

const envelope = (runId: string, seq: number, type: string, payload: unknown, at: Date, userId: string, threadId: string): RunEventEnvelope =>
  ({ type, event_id: `${runId}-${seq}`, seq, run_id: runId, thread_id: threadId, user_id: userId, agent_name: 'streamer', timestamp: at.toISOString(), payload }) as RunEventEnvelope;

function acceptRow(o: { userId: string; at: Date; threadId?: string | null; newThreadId?: string; text?: string; correlationId?: string | null; id?: string }): AcceptedRunRow {
  const id = o.id ?? uid('run');
  const newThreadId = o.newThreadId ?? uid('thread');
  const text = o.text ?? `input of ${id}`;
  return {
    id,
    userId: o.userId,
    threadId: o.threadId ?? null,
    newThreadId,
    agentName: 'streamer',
    input: JSON.stringify({ text }),
    inputText: text,
    correlationId: o.correlationId ?? null,
    requestId: o.correlationId ?? uid('req'),
    replayOf: null,
    firstEvent: envelope(id, 1, 'message_received', { correlation_id: o.correlationId ?? null }, o.at, o.userId, o.threadId ?? newThreadId),
    correlationSince: o.at.getTime() - 24 * 3600 * 1000,
  };
}
const threadOf = (r: AcceptedRunRow) => r.threadId ?? r.newThreadId;

function finishRow(r: AcceptedRunRow, seq: number, at: Date, answer = `answer of ${r.id}`): FinishedRunRow {
  return {
    runId: r.id,
    threadId: threadOf(r),
    status: 'completed',
    error: null,
    result: answer,
    terminal: envelope(r.id, seq, 'agent_completed', { status: 'completed', success: true, final_response: answer, execution_time_ms: 5 }, at, r.userId, threadOf(r)),
    report: null,
    partialText: answer,
  };
}

/** Every row of the run path's tables, in a stable order: what "nothing changed" compares. */
async function snapshot(): Promise<unknown> {
  const tables = { User: 'id', Thread: 'id', Run: 'id', Message: 'id', RunEvent: 'id' };
  const out: Record<string, unknown> = {};
  for (const [t, key] of Object.entries(tables)) out[t] = await db.query(`SELECT * FROM "${t}" ORDER BY "${key}"`);
  return out;
}

const at0 = new Date('2026-11-26T10:00:00.123Z');
const ms = (n: number) => new Date(at0.getTime() + n);

test('accept, running, events and finish of many runs asked in one turn land as asked, in few commits', async () => {
  const w = writer();
  const user = uid('user');
  const existing = uid('thread');
  await w.createThread(user, existing, 'kept thread', at0);
  const N = 40;
  const rows = Array.from({ length: N }, (_, i) => acceptRow({ userId: user, at: ms(i), threadId: i % 4 === 0 ? existing : null }));
  const commitsBefore = w.commits.stats.commits;
  // Everything asked in one turn: per run, accept → running → events → finish.
  await Promise.all(
    rows.flatMap((r, i) => [
      w.acceptRun(r),
      w.markRunning(r.id, 'cell1-g1', i % 3, ms(1000 + i), 1),
      w.appendEvents([envelope(r.id, 2, 'agent_started', { status: 'running', message: '' }, ms(1000 + i), user, threadOf(r)), envelope(r.id, 3, 'partial_result', { text: `p${i}` }, ms(1500 + i), user, threadOf(r))]),
      w.finishRun(finishRow(r, 4, ms(2000 + i))),
    ]),
  );
  expect(w.commits.stats.commits - commitsBefore).toBeLessThanOrEqual(2);
  expect(w.commits.stats.retriedAlone).toBe(0);

  const read = await readThroughPrisma(`async (store, prisma) => {
    const runs = [];
    for (const id of ${JSON.stringify(rows.map((r) => r.id))}) {
      const run = await store.findRun(${JSON.stringify(user)}, id);
      runs.push({ run, events: (await store.listEvents(run, 0, 100)).map((e) => [e.seq, e.type, e.timestamp]) });
    }
    const messages = await prisma.message.findMany({ where: { thread: { userId: ${JSON.stringify(user)} } }, orderBy: { id: 'asc' } });
    const kept = await store.findThread(${JSON.stringify(user)}, ${JSON.stringify(existing)});
    return { runs, messages: messages.map((m) => [m.runId, m.role, m.content, m.createdAt]), kept };
  }`);
  read.runs.forEach(({ run: r, events }: any, i: number) => {
    expect(r).toMatchObject({ id: rows[i]!.id, status: 'completed', cellId: 'cell1-g1', workerId: i % 3, attempts: 1, result: `answer of ${rows[i]!.id}` });
    expect([r.queuedAt, r.startedAt, r.finishedAt]).toEqual([ms(i), ms(1000 + i), ms(2000 + i)].map((d) => d.toISOString()));
    expect(events).toEqual([
      [1, 'message_received', ms(i).toISOString()],
      [2, 'agent_started', ms(1000 + i).toISOString()],
      [3, 'partial_result', ms(1500 + i).toISOString()],
      [4, 'agent_completed', ms(2000 + i).toISOString()],
    ]);
  });
  // Message ids follow the order the writes were asked for: each run's question, then its answer.
  expect(read.messages).toEqual(rows.flatMap((r, i) => [[r.id, 'user', `input of ${r.id}`, ms(i).toISOString()], [r.id, 'assistant', `answer of ${r.id}`, ms(2000 + i).toISOString()]]));
  // The continued thread was touched by its latest answer.
  expect(read.kept.updatedAt).toBe(ms(2000 + 36).toISOString());
});

test('a run changed several times in one batch ends in the last state asked', async () => {
  const w = writer();
  const user = uid('user');
  const [a, b, c] = [0, 1, 2].map((i) => acceptRow({ userId: user, at: ms(i) }));
  await Promise.all([a, b, c].map((r) => w.acceptRun(r!)));
  const before = w.commits.stats.commits;
  await Promise.all([
    w.markRunning(a!.id, 'cell1-g1', 1, ms(10), 1),
    w.markRequeued(a!.id),
    w.markRunning(a!.id, 'cell2-g1', 2, ms(20), 2),
    w.markRunning(b!.id, 'cell1-g1', 3, ms(10), 1),
    w.markRequeued(b!.id),
    w.markRunning(c!.id, 'cell1-g1', 4, ms(10), 1),
    w.finishRun(finishRow(c!, 2, ms(30))),
  ]);
  expect(w.commits.stats.commits - before).toBe(1);
  const rows = await db.query(`SELECT id, status, "cellId", "workerId", "attempts", "startedAt" = $2::timestamp(3) AS "startedLast" FROM "Run" WHERE "userId" = $1 ORDER BY "queuedAt"`, [user, '2026-11-26T10:00:00.143']);
  expect(rows).toEqual([
    { id: a!.id, status: 'running', cellId: 'cell2-g1', workerId: 2, attempts: 2, startedLast: true },
    { id: b!.id, status: 'queued', cellId: 'cell1-g1', workerId: 3, attempts: 1, startedLast: false },
    { id: c!.id, status: 'completed', cellId: 'cell1-g1', workerId: 4, attempts: 1, startedLast: false },
  ]);
});

test('a faulty write fails alone; the writes batched with it land', async () => {
  const w = writer();
  const [me, other] = [uid('user'), uid('user')];
  const othersThread = uid('thread');
  await w.createThread(other, othersThread, 'not yours', at0);
  const good1 = acceptRow({ userId: me, at: ms(1) });
  await w.acceptRun(good1);
  const missing = acceptRow({ userId: me, at: ms(2), threadId: uid('gone') });
  const stolen = acceptRow({ userId: me, at: ms(3), newThreadId: othersThread });
  const good2 = acceptRow({ userId: me, at: ms(4) });
  const retriedBefore = w.commits.stats.retriedAlone;
  const results = await Promise.allSettled([
    w.appendEvents([envelope(good1.id, 2, 'partial_result', { text: 'x' }, ms(5), me, threadOf(good1))]),
    w.acceptRun(missing),
    w.createThread(me, othersThread, 'mine now', ms(6)),
    w.acceptRun(stolen),
    w.acceptRun(good2),
    w.finishRun(finishRow(good1, 3, ms(7))),
  ]);
  expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'rejected', 'fulfilled', 'fulfilled']);
  for (const i of [1, 2, 3]) expect((results[i] as PromiseRejectedResult).reason).toBeInstanceOf(RowMissingError);
  expect(w.commits.stats.retriedAlone - retriedBefore).toBe(6);

  expect(await db.query(`SELECT id, status FROM "Run" WHERE "userId" = $1 ORDER BY "queuedAt"`, [me])).toEqual([
    { id: good1.id, status: 'completed' },
    { id: good2.id, status: 'queued' },
  ]);
  expect(await db.query(`SELECT seq FROM "RunEvent" WHERE "runId" = $1 ORDER BY seq`, [good1.id])).toEqual([{ seq: 1 }, { seq: 2 }, { seq: 3 }]);
  expect(await db.query(`SELECT "userId", title FROM "Thread" WHERE id = $1`, [othersThread])).toEqual([{ userId: other, title: 'not yours' }]);
  expect(await db.query(`SELECT count(*)::int AS n FROM "Message" WHERE "runId" = ANY($1)`, [[missing.id, stolen.id]])).toEqual([{ n: 0 }]);
});

describe('two accepts of one (user, correlation id) at the same time', () => {
  async function expectOneWinner(results: PromiseSettledResult<void>[], rows: AcceptedRunRow[]) {
    const won = results.findIndex((r) => r.status === 'fulfilled');
    const lost = 1 - won;
    expect(won).toBeGreaterThanOrEqual(0);
    expect(results[lost]!.status).toBe('rejected');
    expect((results[lost] as PromiseRejectedResult).reason).toBeInstanceOf(CorrelationTakenError);
    const loser = rows[lost]!;
    // No half rows of the loser: no run, no message, no event, no thread.
    const left = await db.query(
      `SELECT 'run' AS what FROM "Run" WHERE id = $1 UNION ALL SELECT 'message' FROM "Message" WHERE "runId" = $1 UNION ALL SELECT 'event' FROM "RunEvent" WHERE "runId" = $1 UNION ALL SELECT 'thread' FROM "Thread" WHERE id = $2`,
      [loser.id, loser.newThreadId],
    );
    expect(left).toEqual([]);
    expect(await db.query(`SELECT id FROM "Run" WHERE "userId" = $1 AND "correlationId" = $2`, [rows[won]!.userId, rows[won]!.correlationId])).toEqual([{ id: rows[won]!.id }]);
  }

  test('in one batch of one writer', async () => {
    const w = writer();
    const user = uid('user');
    const rows = [acceptRow({ userId: user, at: ms(1), correlationId: 'same' }), acceptRow({ userId: user, at: ms(2), correlationId: 'same' })];
    await expectOneWinner(await Promise.allSettled(rows.map((r) => w.acceptRun(r))), rows);
  });

  test('from two writers (two nodes)', async () => {
    const [w1, w2] = [writer(), writer()];
    const user = uid('user');
    const rows = [acceptRow({ userId: user, at: ms(1), correlationId: 'same' }), acceptRow({ userId: user, at: ms(1), correlationId: 'same' })];
    await expectOneWinner(await Promise.allSettled([w1.acceptRun(rows[0]!), w2.acceptRun(rows[1]!)]), rows);
  });
});

test('a batch committed twice changes nothing the second time', async () => {
  const user = uid('user');
  const w = writer();
  const existing = uid('thread');
  await w.createThread(user, existing, 'kept', at0);
  const earlier = acceptRow({ userId: user, at: ms(-5000), correlationId: 'again' });
  await w.acceptRun(earlier);
  const a = acceptRow({ userId: user, at: ms(1), threadId: existing });
  const b = acceptRow({ userId: user, at: ms(2), correlationId: 'corr-b' });
  const items: RunWrite[] = [
    { kind: 'thread', userId: user, id: uid('thread'), title: 'new', at: ms(0).toISOString() },
    { kind: 'accept', row: a },
    { kind: 'accept', row: b },
    { kind: 'running', runId: a.id, cellId: 'c', workerId: 1, startedAt: ms(10).toISOString(), attempts: 1, owner: null },
    { kind: 'events', events: [envelope(a.id, 2, 'partial_result', { text: 'x' }, ms(11), user, existing)], owner: null },
    { kind: 'finish', row: finishRow(a, 3, ms(12)), owner: null },
    { kind: 'running', runId: b.id, cellId: 'c', workerId: 2, startedAt: ms(10).toISOString(), attempts: 1, owner: null },
    { kind: 'requeued', runId: b.id, owner: null },
    { kind: 'running', runId: earlier.id, cellId: 'c', workerId: 3, startedAt: ms(13).toISOString(), attempts: 1, owner: null },
    { kind: 'finish', row: { ...finishRow(earlier, 2, ms(14)), status: 'failed', error: { code: 'AGENT_ERROR', message: 'boom' }, result: null, partialText: 'half' }, owner: null },
  ];
  const pool = createPool(writePoolConfig(db.url, 1), quiet);
  pools.push(pool);
  const commitOnce = async () => {
    const c = await pool.connect();
    try {
      await c.query('BEGIN');
      for (const s of runStatements(items)) await c.query({ name: s.name, text: s.text, values: s.values });
      await c.query('COMMIT');
    } finally {
      c.release();
    }
  };
  await commitOnce();
  const first = await snapshot();
  await commitOnce();
  expect(await snapshot()).toEqual(first);
  expect(await db.query(`SELECT role, content, status FROM "Message" WHERE "runId" = ANY($1) ORDER BY id`, [[a.id, earlier.id]])).toEqual([
    { role: 'user', content: `input of ${earlier.id}`, status: 'complete' },
    { role: 'user', content: `input of ${a.id}`, status: 'complete' },
    { role: 'assistant', content: `answer of ${a.id}`, status: 'complete' },
    { role: 'assistant', content: 'half', status: 'interrupted' },
  ]);
});

/** Two runs of one user, ids `<base>-a` < `<base>-b`, accepted. */
async function twoRuns(base: string): Promise<[AcceptedRunRow, AcceptedRunRow, string]> {
  const w = writer();
  const user = uid('user');
  const [a, b] = [acceptRow({ userId: user, at: ms(0), id: `${base}-a` }), acceptRow({ userId: user, at: ms(1), id: `${base}-b` })];
  await w.acceptRun(a);
  await w.acceptRun(b);
  return [a, b, user];
}

/**
 * A batch of `items` against a transaction that locks run a, then (once the batch waits) run b, as a takeover or a
 * give-back locks runs (`ORDER BY "id" FOR UPDATE`). The locker finds the deadlock if there is one (its
 * deadlock_timeout is the shorter): its second lock is then rejected, rolled back.
 */
async function batchBesideLocker(a: AcceptedRunRow, b: AcceptedRunRow, items: RunWrite[]): Promise<void> {
  const name = `atoll-batch-${a.id}`;
  const locker = new pg.Client({ connectionString: db.url, options: '-c deadlock_timeout=200ms' });
  const batcher = new pg.Client({ connectionString: db.url, options: `${WRITE_CONNECTION_OPTIONS} -c deadlock_timeout=30s`, application_name: name });
  await Promise.all([locker.connect(), batcher.connect()]);
  try {
    await locker.query('BEGIN');
    await locker.query('SELECT "id" FROM "Run" WHERE "id" = $1 FOR UPDATE', [a.id]);
    const batch = (async () => {
      await batcher.query('BEGIN');
      for (const s of runStatements(items)) await batcher.query({ name: s.name, text: s.text, values: s.values });
      await batcher.query('COMMIT');
    })();
    batch.catch(() => undefined);
    const waiting = async () => (await db.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`, [name])).length > 0;
    expect(await eventually(waiting, 10_000, 10)).toBe(true);
    // The batch must not hold b yet.
    await expect(locker.query('SELECT "id" FROM "Run" WHERE "id" = $1 FOR UPDATE', [b.id])).resolves.toMatchObject({ rowCount: 1 });
    await locker.query('COMMIT');
    await batch;
  } finally {
    await Promise.all([locker.end(), batcher.end()]);
  }
}

const statuses = (a: AcceptedRunRow, b: AcceptedRunRow) => db.query(`SELECT "id", "status" FROM "Run" WHERE "id" = ANY($1) ORDER BY "id"`, [[a.id, b.id]]);

// A batch locked the runs it changes in the order their writes came in, while a takeover or a give-back locks several
// runs by id: the two could each hold a run the other waits for, and PostgreSQL rolled one back after deadlock_timeout.
test('a batch locks the runs it changes by id, as the statements locking several runs do: no deadlock with them', async () => {
  const [a, b] = await twoRuns(uid('order'));
  // The batch's writes came in b first, then a.
  await batchBesideLocker(a, b, [
    { kind: 'finish', row: finishRow(b, 2, ms(2)), owner: null },
    { kind: 'finish', row: finishRow(a, 2, ms(3)), owner: null },
  ]);
  expect(await statuses(a, b)).toEqual([
    { id: a.id, status: 'completed' },
    { id: b.id, status: 'completed' },
  ]);
});

// The final UPDATE locked the runs it changes by id, but the fence, which locks the runs that only get events, ran
// after it: a batch changing run b and writing an event of run a still locked b, then a (helper-83).
test('a batch changing one run and writing only an event of another locks both by id: no deadlock with a takeover', async () => {
  const base = uid('fenced');
  const [a, b, user] = await twoRuns(base);
  const lease = `lease-${base}`;
  await db.query(`INSERT INTO "Node" ("id", "nodeId", "startedAt", "expiresAt") VALUES ($1, $1, now(), now() + interval '1 hour')`, [lease]);
  await db.query(`UPDATE "Run" SET "owner" = $2, "status" = 'running' WHERE "id" = ANY($1)`, [[a.id, b.id], lease]);
  await batchBesideLocker(a, b, [
    { kind: 'events', events: [envelope(a.id, 2, 'agent_thinking', { reasoning: 'r' }, ms(2), user, threadOf(a))], owner: lease },
    { kind: 'requeued', runId: b.id, owner: lease },
  ]);
  expect(await statuses(a, b)).toEqual([
    { id: a.id, status: 'running' },
    { id: b.id, status: 'queued' },
  ]);
});

// A thread's delete removes the thread's rows in statements of their own, without its lock, then locks the thread
// and, last, its user's stored bytes in a short transaction. A batch continuing the thread locked the user's stored
// bytes (the `stored` CTE) before the thread: against that last transaction, a deadlock, which PostgreSQL broke after
// deadlock_timeout (1 s, the node's one write connection held that long for every user) by rolling one back.
/**
 * A thread with one ended run, whose delete (on a writer of its own, reading through a pool of its own) has begun and
 * waits: a reader holding the thread's message (KEY SHARE) keeps it in its removal of the messages until released.
 */
async function deletionHeldUp(name: string) {
  const reads = createPool(writePoolConfig(db.url, 2), quiet);
  const writes = createPool(writePoolConfig(db.url, 1), quiet);
  pools.push(reads, writes);
  const w = createPgRunWrites(writes, quiet, undefined, reads);
  const user = uid(name);
  const first = acceptRow({ userId: user, at: ms(0) });
  await w.acceptRun(first);
  await w.finishRun(finishRow(first, 2, ms(1)));
  const thread = threadOf(first);
  const holder = new pg.Client({ connectionString: db.url });
  await holder.connect();
  await holder.query('BEGIN');
  await holder.query('SELECT 1 FROM "Message" WHERE "threadId" = $1 FOR KEY SHARE', [thread]);
  let settled = false;
  const deleting = w.deleteThread(user, thread).finally(() => (settled = true));
  await eventually(async () => (await db.query(`SELECT 1 FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'`)).length > 0, 10_000, 10);
  return { w, user, first, thread, deleting, settled: () => settled, release: () => holder.query('ROLLBACK'), end: () => holder.end() };
}

test("an accept continuing a thread while this node deletes it is refused at once (RowMissingError); the delete ends, the count exact", async () => {
  const d = await deletionHeldUp('delete-race');
  try {
    expect(await d.w.acceptRun(acceptRow({ userId: d.user, at: ms(2), threadId: d.thread })).then(() => 'accepted', (err: Error) => err.name)).toBe('RowMissingError');
    await d.release();
    await expect(d.deleting).resolves.toBe('deleted');
    expect(await storedOf(d.user)).toEqual({ counted: 0, held: 0 });
  } finally {
    await d.end();
  }
});

test("while a thread's rows are removed its lock is not held: an accept continuing it through another node's writer does not wait; the delete then answers busy and leaves that run whole", async () => {
  const d = await deletionHeldUp('delete-race-nodes');
  try {
    const late = acceptRow({ userId: d.user, at: ms(2), threadId: d.thread });
    await writer().acceptRun(late);
    expect(d.settled()).toBe(false);
    await d.release();
    await expect(d.deleting).resolves.toBe('busy');
    // The ended run's events went; the new run's message and event 1 are there, and counted.
    expect(await db.query('SELECT "runId", "seq" FROM "RunEvent" WHERE "runId" = ANY($1) ORDER BY 1, 2', [[d.first.id, late.id]])).toEqual([{ runId: late.id, seq: 1 }]);
    const stored = await storedOf(d.user);
    expect(stored.counted).toBeGreaterThan(0);
    expect(stored.counted).toBe(stored.held);
  } finally {
    await d.end();
  }
});

test("a batch continuing a thread locks the thread before its user's stored bytes: no deadlock with the delete's last transaction (the thread, then the bytes)", async () => {
  const w = writer();
  const user = uid('delete-order');
  const first = acceptRow({ userId: user, at: ms(0) });
  await w.acceptRun(first);
  const thread = threadOf(first);
  // Its deadlock_timeout is the shorter: a deadlock, if there is one, is found by this side, whose update then fails.
  const last = new pg.Client({ connectionString: db.url, options: '-c deadlock_timeout=100ms' });
  await last.connect();
  try {
    await last.query('BEGIN');
    await last.query('SELECT 1 FROM "Thread" WHERE "id" = $1 FOR UPDATE', [thread]);
    const accepting = w.acceptRun(acceptRow({ userId: user, at: ms(2), threadId: thread })).then(() => 'accepted', (err: Error) => err.name);
    // The batch waits for the thread; had it taken the user's stored bytes first, this update would wait for it in turn.
    await eventually(async () => (await db.query(`SELECT 1 FROM pg_locks WHERE NOT granted AND locktype IN ('transactionid', 'tuple')`)).length > 0, 10_000, 10);
    await last.query('UPDATE "UserStorage" SET "bytes" = "bytes" WHERE "userId" = $1', [user]);
    await last.query('COMMIT');
    expect(await accepting).toBe('accepted');
  } finally {
    await last.end();
  }
});

test("another user's DELETE of a thread id does not make the owner's thread read as gone, nor refuse the owner's accept continuing it", async () => {
  const w = writer();
  const alice = uid('owner');
  const first = acceptRow({ userId: alice, at: ms(0) });
  await w.acceptRun(first);
  await w.finishRun(finishRow(first, 2, ms(1)));
  const thread = threadOf(first);
  // Bob asks to delete alice's thread (an id he should not be able to tell from an unknown one): while his
  // DELETE looks it up, alice's thread is hers as before.
  const bobs = w.deleteThread(uid('other'), thread);
  const seenByAlice = w.isDeleting(alice, thread);
  const continued = w.acceptRun(acceptRow({ userId: alice, at: ms(2), threadId: thread })).then(() => 'accepted', (err: Error) => err.name);
  await expect(bobs).resolves.toBe('missing');
  expect(seenByAlice).toBe(false);
  expect(await continued).toBe('accepted');
});

/**
 * A pool whose connections note each query as it is issued: its text or statement name, and how many of the
 * queries issued before it had answered by then. A commit that goes out in one round trip issues everything
 * before any of it answers.
 */
function notingPool(): { pool: pg.Pool; issued: { what: string; answeredBefore: number }[] } {
  const issued: { what: string; answeredBefore: number }[] = [];
  let answered = 0;
  const base = createPool(writePoolConfig(db.url, 1), quiet);
  pools.push(base);
  const pool = aroundQueries(base, (query, q, rest) => {
    issued.push({ what: typeof q === 'string' ? q : ((q as pg.QueryConfig).name ?? (q as pg.QueryConfig).text), answeredBefore: answered });
    return query(q, ...rest).finally(() => answered++);
  });
  return { pool, issued };
}

test('a commit holding a request is one round trip once its connection is known; one without is a lone statement', async () => {
  const { pool, issued } = notingPool();
  const w = createPgRunWrites(pool, quiet);
  const user = uid('user');
  const r = acceptRow({ userId: user, at: ms(0) });
  await w.acceptRun(r);
  // First, once per connection: which backend to end if a COMMIT is left in doubt (backends.ts). Then BEGIN, the
  // statement and COMMIT together.
  expect(issued.map((q) => q.what)).toEqual(['atoll_backend', 'BEGIN', 'atoll_batch', 'COMMIT']);
  expect(issued.map((q) => q.answeredBefore)).toEqual([0, 1, 1, 1]);
  issued.length = 0;
  await w.appendEvents([envelope(r.id, 2, 'partial_result', { text: 'x' }, ms(1), user, r.newThreadId)]);
  expect(issued).toEqual([{ what: 'atoll_batch', answeredBefore: 4 }]);
  issued.length = 0;
  await w.acceptRun(acceptRow({ userId: user, at: ms(2) }));
  expect(issued).toEqual(['BEGIN', 'atoll_batch', 'COMMIT'].map((what) => ({ what, answeredBefore: 5 })));
});

test('a writer in another time zone (TZ=America/New_York) writes the same instants', async () => {
  const user = uid('user');
  const r = acceptRow({ userId: user, at: ms(0) });
  const script = `
    const { createPool, writePoolConfig } = require(${JSON.stringify(path.join(ROOT, 'dist/server/store/postgresql/pools.js'))});
    const { createPgRunWrites } = require(${JSON.stringify(path.join(ROOT, 'dist/server/store/postgresql/run-writes.js'))});
    const quiet = { info() {}, warn() {} };
    const pool = createPool(writePoolConfig(${JSON.stringify(db.url)}, 1), quiet);
    const w = createPgRunWrites(pool, quiet);
    const r = ${JSON.stringify(r)};
    (async () => {
      await w.acceptRun(r);
      // Dates as the front passes them: JS Dates, in a process whose local time is New York's.
      await w.markRunning(r.id, 'c', 1, new Date(${ms(1000).getTime()}), 1);
      await w.finishRun(${JSON.stringify(finishRow(r, 2, ms(2000)))});
      process.stdout.write(JSON.stringify({ offset: new Date(${at0.getTime()}).getTimezoneOffset() }));
      await pool.end();
    })();
  `;
  const { stdout } = await run(process.execPath, ['-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH ?? '', TZ: 'America/New_York' } });
  expect(JSON.parse(stdout).offset).toBe(300); // the writer really was five hours behind UTC
  const body = `async (store) => { const run = await store.findRun(${JSON.stringify(user)}, ${JSON.stringify(r.id)}); return [run.queuedAt, run.startedAt, run.finishedAt, (await store.listEvents(run, 0, 10)).map((e) => e.timestamp)]; }`;
  const expected = [ms(0), ms(1000), ms(2000)].map((d) => d.toISOString());
  const expectedRead = [...expected, [expected[0], expected[2]]];
  expect(await readThroughPrisma(body)).toEqual(expectedRead);
  expect(await readThroughPrisma(body, { TZ: 'America/New_York' })).toEqual(expectedRead);
  // The columns hold UTC wall time, whatever the writer's zone.
  expect(await db.query(`SELECT "queuedAt"::text AS q, "startedAt"::text AS s, "finishedAt"::text AS f FROM "Run" WHERE id = $1`, [r.id])).toEqual([
    { q: '2026-11-26 10:00:00.123', s: '2026-11-26 10:00:01.123', f: '2026-11-26 10:00:02.123' },
  ]);
});

const storedOf = (user: string) => storedAndHeld(db.url, user);

test("a request whose COMMIT's answer is an error raised on this side (not the server's) fails with DB_UNAVAILABLE, and what it committed is undone", async () => {
  let lose = false;
  const base = createPool(writePoolConfig(db.url, 1), quiet);
  pools.push(base);
  const pool = aroundQueries(base, async (query, q, rest) => {
    const result = await query(q, ...rest);
    if (q === 'COMMIT' && lose) {
      lose = false;
      throw new TypeError('something on this side broke');
    }
    return result;
  });
  const w = createPgRunWrites(pool, quiet);
  const user = uid('user');
  await w.acceptRun(acceptRow({ userId: user, at: ms(0) }));
  const r = acceptRow({ userId: user, at: ms(1), correlationId: 'unrecognised' });
  lose = true;
  await expect(w.acceptRun(r)).rejects.toMatchObject({ name: 'CodedError', code: 'DB_UNAVAILABLE' });
  // It did commit; refused, so undone by itself (after the connection's backend has ended).
  expect(await eventually(async () => !w.commits.undoPending && (await db.query(`SELECT id FROM "Run" WHERE id = $1`, [r.id])).length === 0, 15_000, 20)).toBe(true);
  // The undo took what it removed off the user's count as well.
  const stored = await storedOf(user);
  expect(stored.counted).toBeGreaterThan(0);
  expect(stored.counted).toBe(stored.held);
  await expect(w.acceptRun(acceptRow({ userId: user, at: ms(2), correlationId: 'unrecognised' }))).resolves.toBeUndefined();
});

describe('while the database cannot be reached (a TCP proxy in between)', () => {
  let proxy: TcpProxy;
  beforeEach(async () => {
    proxy = await startTcpProxy(5432);
  });
  afterEach(async () => {
    await proxy.close();
  });
  const isUnavailable = (err: unknown) => err instanceof CodedError && err.code === 'DB_UNAVAILABLE';

  test('requests fail with DB_UNAVAILABLE at once; acknowledged writes wait and land in order; the first request after is accepted', async () => {
    const warned: string[] = [];
    const w = writer(db.urlVia(proxy.port), {}, { info: (_o: unknown, m?: string) => void warned.push(String(m)), warn: (_o: unknown, m?: string) => void warned.push(String(m)) } as never);
    const user = uid('user');
    const r = acceptRow({ userId: user, at: ms(0) });
    await w.acceptRun(r);

    proxy.drop();
    const events = Array.from({ length: 5 }, (_, i) => envelope(r.id, i + 2, 'partial_result', { text: `p${i}` }, ms(i + 1), user, r.newThreadId));
    const kept = [w.markRunning(r.id, 'c', 1, ms(1), 1), ...events.map((e) => w.appendEvents([e])), w.finishRun(finishRow(r, 7, ms(9)))];
    let keptSettled = false;
    void Promise.allSettled(kept).then(() => (keptSettled = true));
    await eventually(() => w.commits.unreachable, 10_000, 10);
    // Requests meanwhile: each refused, quickly, whatever the retry backoff has grown to.
    for (let i = 0; i < 3; i++) {
      const started = Date.now();
      await expect(w.acceptRun(acceptRow({ userId: user, at: ms(100 + i) }))).rejects.toMatchObject({ name: 'CodedError', code: 'DB_UNAVAILABLE' });
      await expect(w.createThread(user, uid('thread'), 'no', ms(100))).rejects.toMatchObject({ name: 'CodedError', code: 'DB_UNAVAILABLE' });
      expect(Date.now() - started).toBeLessThan(1_500);
    }
    expect(keptSettled).toBe(false);
    proxy.restore();
    await Promise.all(kept);
    expect(await db.query(`SELECT seq FROM "RunEvent" WHERE "runId" = $1 ORDER BY seq`, [r.id])).toEqual([1, 2, 3, 4, 5, 6, 7].map((seq) => ({ seq })));
    expect(await db.query(`SELECT status FROM "Run" WHERE "userId" = $1`, [user])).toEqual([{ status: 'completed' }]);
    expect(warned).toEqual(expect.arrayContaining([expect.stringMatching(/unreachable/), expect.stringMatching(/reachable again/)]));

    // A second outage with nothing kept: the first request once the database is back is accepted, not refused
    // by what the last attempt found.
    proxy.drop();
    await expect(w.acceptRun(acceptRow({ userId: user, at: ms(200) }))).rejects.toMatchObject({ name: 'CodedError', code: 'DB_UNAVAILABLE' });
    expect(w.commits.unreachable).toBe(true);
    proxy.restore();
    await expect(w.acceptRun(acceptRow({ userId: user, at: ms(201) }))).resolves.toBeUndefined();
    expect(w.commits.unreachable).toBe(false);
  });

  test('a request whose commit was lost in flight fails, and what it committed is undone once the database is back', async () => {
    const w = writer(db.urlVia(proxy.port));
    const user = uid('user');
    await w.acceptRun(acceptRow({ userId: user, at: ms(0) })); // the connection is open and warm
    const lost = acceptRow({ userId: user, at: ms(1), correlationId: 'lost-commit' });
    const thread = uid('thread');
    proxy.dropAfter('COMMIT');
    const [accepted, created] = await Promise.allSettled([w.acceptRun(lost), w.createThread(user, thread, 'lost too', ms(1))]);
    expect(proxy.tripped).toBe(true);
    expect([accepted.status, created.status]).toEqual(['rejected', 'rejected']);
    expect(isUnavailable((accepted as PromiseRejectedResult).reason) && isUnavailable((created as PromiseRejectedResult).reason)).toBe(true);
    // The server did commit it: the answer alone was lost.
    const rowsOf = () =>
      db.query(`SELECT 'run' AS what FROM "Run" WHERE id = $1 UNION ALL SELECT 'message' FROM "Message" WHERE "runId" = $1 UNION ALL SELECT 'event' FROM "RunEvent" WHERE "runId" = $1 UNION ALL SELECT 'thread' FROM "Thread" WHERE id = ANY($2) ORDER BY 1`, [
        lost.id,
        [lost.newThreadId, thread],
      ]);
    expect(await eventually(async () => (await rowsOf()).length === 5, 10_000, 20)).toBe(true);
    expect(w.commits.undoPending).toBe(true);
    proxy.restore();
    // Undone by itself once the database answers, before anything else is written.
    expect(await eventually(() => !w.commits.undoPending, 15_000, 20)).toBe(true);
    expect(await rowsOf()).toEqual([]);
    const stored = await storedOf(user);
    expect(stored.counted).toBe(stored.held);
    await expect(w.acceptRun(acceptRow({ userId: user, at: ms(2), correlationId: 'lost-commit' }))).resolves.toBeUndefined();
  });

  test("a COMMIT the server holds up past the read timeout: its backend is ended before the undo, so the refused run never lands", async () => {
    const w = writer(db.url, { query_timeout: 1_000 });
    const user = uid('user');
    await w.acceptRun(acceptRow({ userId: user, at: ms(0) }));
    const held = acceptRow({ userId: user, at: ms(1), correlationId: 'held-commit' });
    const commits = await holdCommits(db, 'Run', 'INSERT', `NEW."correlationId" = 'held-commit'`);
    try {
      await expect(w.acceptRun(held)).rejects.toMatchObject({ name: 'CodedError', code: 'DB_UNAVAILABLE' });
      expect(await eventually(() => !w.commits.undoPending, 15_000, 20)).toBe(true);
    } finally {
      // Had its backend been left running, the COMMIT would land now, after the undo found nothing to delete.
      await commits.release();
    }
    expect(await db.query(`SELECT id FROM "Run" WHERE id = $1 UNION ALL SELECT id FROM "Thread" WHERE id = $2`, [held.id, held.newThreadId])).toEqual([]);
    await expect(w.acceptRun(acceptRow({ userId: user, at: ms(2), correlationId: 'held-commit' }))).resolves.toBeUndefined();
  });

  test('a backend that has not exited yet holds the undo back: requests refused and acknowledged writes kept meanwhile, all settled once it has', async () => {
    // The server takes longer than the wait to end it (a stalled disk): told by a Backends that answers 'alive'.
    const real = createBackends();
    let stalled = true;
    const endings: string[] = [];
    const backends: Backends = {
      of: real.of,
      async end(p, b) {
        const ending = stalled ? 'alive' : await real.end(p, b);
        endings.push(ending);
        return ending;
      },
    };
    const w = writer(db.urlVia(proxy.port), {}, quiet, backends);
    const user = uid('user');
    const r = acceptRow({ userId: user, at: ms(0) });
    await w.acceptRun(r);
    const lost = acceptRow({ userId: user, at: ms(1) });
    proxy.dropAfter('COMMIT');
    await expect(w.acceptRun(lost)).rejects.toMatchObject({ name: 'CodedError', code: 'DB_UNAVAILABLE' });
    proxy.restore();
    const kept = w.appendEvents([envelope(r.id, 2, 'partial_result', { text: 'kept' }, ms(2), user, r.newThreadId)]);
    let keptSettled = false;
    void kept.then(() => (keptSettled = true));
    expect(await eventually(() => endings.length >= 2, 10_000, 20)).toBe(true);
    await expect(w.acceptRun(acceptRow({ userId: user, at: ms(3) }))).rejects.toMatchObject({ code: 'DB_UNAVAILABLE' });
    expect(w.commits.undoPending).toBe(true);
    expect(keptSettled).toBe(false);
    stalled = false;
    await kept;
    expect(w.commits.undoPending).toBe(false);
    expect(endings.at(-1)).toBe('ended');
    expect(await db.query(`SELECT id FROM "Run" WHERE id = $1`, [lost.id])).toEqual([]);
    expect(await db.query(`SELECT seq FROM "RunEvent" WHERE "runId" = $1 ORDER BY seq`, [r.id])).toEqual([{ seq: 1 }, { seq: 2 }]);
  });

  test("acknowledged writes whose commit was lost are committed again, once", async () => {
    const w = writer(db.urlVia(proxy.port));
    const user = uid('user');
    const r = acceptRow({ userId: user, at: ms(0) });
    await w.acceptRun(r);
    // Without a request, the batch is one statement that commits on its own (no BEGIN, no COMMIT): its answer is lost.
    proxy.dropAfter('atoll_batch');
    const done = Promise.all([
      w.markRunning(r.id, 'c', 1, ms(1), 1),
      w.appendEvents([envelope(r.id, 2, 'partial_result', { text: 'a' }, ms(2), user, r.newThreadId)]),
      w.finishRun(finishRow(r, 3, ms(3))),
    ]);
    expect(await eventually(() => proxy.tripped && w.commits.unreachable, 10_000, 10)).toBe(true);
    expect(await eventually(async () => (await db.query(`SELECT status FROM "Run" WHERE id = $1`, [r.id]))[0].status === 'completed', 10_000, 20)).toBe(true);
    proxy.restore();
    await done;
    expect(await db.query(`SELECT seq FROM "RunEvent" WHERE "runId" = $1 ORDER BY seq`, [r.id])).toEqual([{ seq: 1 }, { seq: 2 }, { seq: 3 }]);
    expect(await db.query(`SELECT role FROM "Message" WHERE "runId" = $1 ORDER BY id`, [r.id])).toEqual([{ role: 'user' }, { role: 'assistant' }]);
  });

  test('closing while it is unreachable gives up on kept writes after the grace, even with an attempt under way', async () => {
    const w = writer(db.urlVia(proxy.port), { connectionTimeoutMillis: 1_000 });
    const user = uid('user');
    const r = acceptRow({ userId: user, at: ms(0) });
    await w.acceptRun(r);
    proxy.hold(); // every attempt now waits a whole connection timeout
    const kept = w.appendEvents([envelope(r.id, 2, 'partial_result', { text: 'a' }, ms(2), user, r.newThreadId)]);
    kept.catch(() => undefined);
    expect(await eventually(() => w.commits.unreachable, 10_000, 10)).toBe(true);
    const started = Date.now();
    let bound: NodeJS.Timeout | undefined;
    const closed = await Promise.race([w.commits.close(300).then(() => 'closed'), new Promise((resolve) => (bound = setTimeout(() => resolve('still waiting'), 10_000)))]);
    clearTimeout(bound);
    expect(closed).toBe('closed');
    expect(Date.now() - started).toBeLessThan(5_000);
    await expect(kept).rejects.toMatchObject({ name: 'CodedError', code: 'DB_UNAVAILABLE' });
    await expect(w.acceptRun(acceptRow({ userId: user, at: ms(3) }))).rejects.toMatchObject({ code: 'DB_UNAVAILABLE' });
  });

  test('a silent partition (nothing answers, nothing is reset): requests fail with DB_UNAVAILABLE, acknowledged writes are kept', async () => {
    // The front's statement timeout is 30 s; a short one here says the same thing sooner.
    const w = writer(db.urlVia(proxy.port), { query_timeout: 1_000, connectionTimeoutMillis: 1_000 });
    const user = uid('user');
    const r = acceptRow({ userId: user, at: ms(0) });
    await w.acceptRun(r);
    proxy.freeze();
    const kept = w.appendEvents([envelope(r.id, 2, 'partial_result', { text: 'a' }, ms(2), user, r.newThreadId)]);
    const request = w.acceptRun(acceptRow({ userId: user, at: ms(3) }));
    await expect(request).rejects.toMatchObject({ name: 'CodedError', code: 'DB_UNAVAILABLE' });
    expect(w.commits.unreachable).toBe(true);
    proxy.restore();
    await kept;
    expect(await db.query(`SELECT seq FROM "RunEvent" WHERE "runId" = $1 ORDER BY seq`, [r.id])).toEqual([{ seq: 1 }, { seq: 2 }]);
  });
});
