/**
 * The shared queue of several nodes on a real PostgreSQL, at the store (server/store/postgresql/cluster-store.ts
 * over the functions of its migrations), with the pools the front uses (pipelined: pools.ts):
 * - an accept's checks refuse by themselves, and the writes sent behind them in the same round trip never
 *   commit: nothing of a refused run is left (OVERLOADED, THREAD_BUSY, a missing thread);
 * - an accept whose COMMIT's answer was lost is reported accepted when it committed;
 * - a claim serves users in turn under their cap, each user's runs in order, one run per conversation; a user who
 *   cannot start a run now never takes a free worker's turn; a full claim says whether a run that could start still
 *   waits (`more`), which is what decides whether the other nodes are woken;
 * - runs a single node left waiting are found by the claims once a node registers;
 * - the runs a claim took whose answer was lost go back to the queue (releaseUnknown), and no others;
 * - a late write of a node whose lease was taken over is refused, even while the takeover still holds the run.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { RunEventEnvelope } from '../../protocol/events';
import type { ClusterStore } from '../../server/cluster/cluster-store';
import { takeoverRule } from '../../server/cluster/takeover';
import { migrationsFolder } from '../../server/store/migrations';
import { applyMigrations } from '../../server/store/postgresql/apply-migrations';
import { createPgClusterStore, queueStatements } from '../../server/store/postgresql/cluster-store';
import { createPool, writePoolConfig } from '../../server/store/postgresql/pools';
import { createPgRunWrites } from '../../server/store/postgresql/run-writes';
import { FencedError } from '../../server/store/run-writes';
import { endingOf, envelopeOf } from '../../server/cluster/envelopes';
import type { NewRun, RunRecord } from '../../server/store/store';
import { testDatabase, type TestDatabase } from '../helpers/pg-database';
import { holdCommits } from '../helpers/held-commits';
import { aroundQueries } from '../helpers/pool-queries';

const quiet = { warn: () => undefined };
let db: TestDatabase;
let cluster: ClusterStore;
let lease: string;

beforeAll(async () => {
  db = await testDatabase('shared_queue');
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  await applyMigrations(c, migrationsFolder('postgresql'));
  await c.end();
  cluster = createPgClusterStore(createPool(writePoolConfig(db.url, 2), quiet), createPool(writePoolConfig(db.url, 1), quiet), quiet);
  ({ lease } = await cluster.register(`node-${randomUUID()}`, 60_000));
});
afterAll(async () => {
  await cluster?.close();
  await db?.drop();
});

let clock = Date.parse('2026-12-04T00:00:00.000Z');

/** A run of `userId`, in a new conversation unless `threadId` names one. */
function newRun(userId: string, threadId: string | null = null): NewRun {
  const id = randomUUID();
  const newThreadId = randomUUID();
  const at = new Date(++clock).toISOString();
  const firstEvent = {
    type: 'message_received',
    event_id: `${id}-1`,
    seq: 1,
    run_id: id,
    thread_id: threadId ?? newThreadId,
    user_id: userId,
    agent_name: 'echo',
    timestamp: at,
    payload: {},
  } as unknown as RunEventEnvelope<'message_received'>;
  return { id, userId, threadId, newThreadId, agentName: 'echo', input: { text: id }, correlationId: null, requestId: randomUUID(), firstEvent, correlationSince: 0 };
}

const roomy = { userMaxQueuedRuns: 100, rejectIfBusy: false };
/** A run whose stop was asked while a node held it, as shared-runs.ts ends it when the node gives it back. */
const stoppedEnding = (run: RunRecord, lastSeq: number) => endingOf(run, lastSeq, 'cancelled', { code: 'CANCELLED', message: 'stopped' });
const user = () => `user-${randomUUID()}`;
const rowsOf = (runId: string) =>
  db.query(`SELECT 'run' AS what FROM "Run" WHERE id = $1 UNION ALL SELECT 'message' FROM "Message" WHERE "runId" = $1 UNION ALL SELECT 'event' FROM "RunEvent" WHERE "runId" = $1`, [runId]);
const finish = (runIds: string[]) => db.query(`UPDATE "Run" SET status = 'completed' WHERE id = ANY($1)`, [runIds]);

test('an accept past USER_MAX_QUEUED_RUNS is refused OVERLOADED, and nothing of it is written', async () => {
  const u = user();
  for (let i = 0; i < 2; i++) await cluster.accept(newRun(u), { ...roomy, userMaxQueuedRuns: 2 });
  const third = newRun(u);
  await expect(cluster.accept(third, { ...roomy, userMaxQueuedRuns: 2 })).rejects.toMatchObject({ name: 'CodedError', code: 'OVERLOADED', message: expect.stringMatching(/USER_MAX_QUEUED_RUNS/) });
  expect(await rowsOf(third.id)).toEqual([]);
  expect(await db.query(`SELECT count(*)::int AS n FROM "Thread" WHERE id = $1`, [third.newThreadId])).toEqual([{ n: 0 }]);
  // The same run is accepted once there is room: the refusal left the connection usable and the user unlocked.
  await expect(cluster.accept(third, { ...roomy, userMaxQueuedRuns: 3 })).resolves.toMatchObject({ record: { id: third.id, status: 'queued' }, busy: [] });
  expect((await rowsOf(third.id)).map((r) => r.what).sort()).toEqual(['event', 'message', 'run']);
});

test('a run on a busy conversation: refused THREAD_BUSY with "reject" (nothing written), accepted with the busy runs named otherwise', async () => {
  const u = user();
  const first = newRun(u);
  await cluster.accept(first, roomy);
  const rejected = newRun(u, first.newThreadId);
  await expect(cluster.accept(rejected, { ...roomy, rejectIfBusy: true })).rejects.toMatchObject({ name: 'CodedError', code: 'THREAD_BUSY' });
  expect(await rowsOf(rejected.id)).toEqual([]);
  const queued = newRun(u, first.newThreadId);
  await expect(cluster.accept(queued, roomy)).resolves.toMatchObject({ busy: [first.id] });
});

test('a run on a conversation that does not exist is refused NOT_FOUND', async () => {
  const lost = newRun(user(), `missing-${randomUUID()}`);
  await expect(cluster.accept(lost, roomy)).rejects.toMatchObject({ name: 'CodedError', code: 'NOT_FOUND' });
  expect(await rowsOf(lost.id)).toEqual([]);
});

/**
 * A pool whose next COMMIT happens, and then its answer is lost as when the connection drops right after it (or,
 * given `error`, replaced by that error raised on this side).
 */
function losingCommitAnswers(pool: pg.Pool, error = () => new Error('Connection terminated unexpectedly')): { pool: pg.Pool; loseNext: (meanwhile?: () => Promise<unknown>) => void } {
  let lose: (() => Promise<unknown>) | null = null;
  const wrapped = aroundQueries(pool, async (query, q, rest) => {
    const result = await query(q, ...rest);
    if (q === 'COMMIT' && lose) {
      // What others do between the COMMIT landing and the look-up that finds it.
      const meanwhile = lose;
      lose = null;
      await meanwhile();
      throw error();
    }
    return result;
  });
  return { pool: wrapped, loseNext: (meanwhile = async () => undefined) => (lose = meanwhile) };
}

test("an accept whose COMMIT's answer was lost: accepted if it committed, with the conversation's unfinished runs accepted before it", async () => {
  const losing = losingCommitAnswers(createPool(writePoolConfig(db.url, 1), quiet));
  const store = createPgClusterStore(losing.pool, createPool(writePoolConfig(db.url, 1), quiet), quiet);
  try {
    const waiting = newRun(user());
    await store.accept(waiting, roomy);
    const ending = newRun(waiting.userId, waiting.newThreadId);
    await store.accept(ending, roomy);
    const lost = newRun(waiting.userId, waiting.newThreadId);
    const later = newRun(waiting.userId, waiting.newThreadId);
    // Before the look-up: a run accepted before it ends, and one is accepted after it (on another node).
    losing.loseNext(async () => {
      await finish([ending.id]);
      await cluster.accept(later, roomy);
    });
    await expect(store.accept(lost, roomy)).resolves.toMatchObject({ record: { id: lost.id, status: 'queued' }, busy: [waiting.id] });
    expect((await rowsOf(lost.id)).map((r) => r.what).sort()).toEqual(['event', 'message', 'run']);
  } finally {
    await store.close();
  }
});

test('an accept is one round trip once its connection is known: BEGIN, the checks, the writes and COMMIT go out together', async () => {
  const issued: { what: string; answeredBefore: number }[] = [];
  let answered = 0;
  const noting = aroundQueries(createPool(writePoolConfig(db.url, 1), quiet), (query, q, rest) => {
    issued.push({ what: typeof q === 'string' ? q : ((q as pg.QueryConfig).name ?? (q as pg.QueryConfig).text), answeredBefore: answered });
    return query(q, ...rest).finally(() => answered++);
  });
  const store = createPgClusterStore(noting, createPool(writePoolConfig(db.url, 1), quiet), quiet);
  try {
    const first = newRun(user());
    await store.accept(first, roomy);
    issued.length = 0;
    const before = answered;
    await expect(store.accept(newRun(first.userId, first.newThreadId), roomy)).resolves.toMatchObject({ busy: [first.id] });
    expect(issued.map((q) => q.what)[0]).toBe('BEGIN');
    expect(issued.map((q) => q.what).at(-1)).toBe('COMMIT');
    expect(issued.every((q) => q.answeredBefore === before)).toBe(true);
  } finally {
    await store.close();
  }
});

test("an accept whose COMMIT's answer is an error raised on this side, not the server's: in doubt as a lost one, so accepted if it committed", async () => {
  const losing = losingCommitAnswers(createPool(writePoolConfig(db.url, 1), quiet), () => new TypeError('something on this side broke'));
  const warned: string[] = [];
  const store = createPgClusterStore(losing.pool, createPool(writePoolConfig(db.url, 1), quiet), { warn: (fields: unknown, message?: string) => void warned.push(`${message} ${JSON.stringify(fields)}`) } as never);
  try {
    const run = newRun(user());
    losing.loseNext();
    await expect(store.accept(run, roomy)).resolves.toMatchObject({ record: { id: run.id, status: 'queued' }, busy: [] });
    expect((await rowsOf(run.id)).map((r) => r.what).sort()).toEqual(['event', 'message', 'run']);
    // A bug on this side is said, even when the run turns out accepted.
    expect(warned).toEqual([expect.stringMatching(/failed on this side.*something on this side broke/)]);
  } finally {
    await store.close();
  }
});

test('an accept whose COMMIT the server holds up past the read timeout: refused, and its backend ended before the look-up, so the run never lands', async () => {
  const store = createPgClusterStore(createPool({ ...writePoolConfig(db.url, 1), query_timeout: 1_000 }, quiet), createPool(writePoolConfig(db.url, 1), quiet), quiet);
  const held = newRun(user());
  const commits = await holdCommits(db, 'Run', 'INSERT', `NEW.id = '${held.id}'`);
  try {
    await expect(store.accept(held, roomy)).rejects.toMatchObject({ name: 'CodedError', code: 'DB_UNAVAILABLE' });
  } finally {
    // Left running, the COMMIT would land now: a run refused with DB_UNAVAILABLE, queued after all.
    await commits.release();
    await store.close();
  }
  expect(await rowsOf(held.id)).toEqual([]);
});

test('an accept the database rolls back for a deadlock with another transaction is sent again, and accepted', async () => {
  // The accept's connection detects the deadlock first (deadlock_timeout 1 s against the other's 30 s): the victim.
  // PostgreSQL looks for a deadlock once per wait, at deadlock_timeout: the other's second lock must be asked for
  // within that second of the accept's wait, which a busy machine needs some room for.
  const store = createPgClusterStore(
    createPool({ ...writePoolConfig(db.url, 1), application_name: 'atoll-deadlock-victim', options: `${writePoolConfig(db.url, 1).options} -c deadlock_timeout=1s` }, quiet),
    createPool(writePoolConfig(db.url, 1), quiet),
    quiet,
  );
  const other = new pg.Client({ connectionString: db.url, options: '-c deadlock_timeout=30s' });
  other.on('error', () => undefined);
  const observer = new pg.Client({ connectionString: db.url });
  await Promise.all([other.connect(), observer.connect()]);
  try {
    const first = newRun(user());
    await store.accept(first, roomy);
    // The other transaction holds the conversation; the accept takes its user's lock and waits for the
    // conversation (it touches it); the other then asks for the user's lock.
    await other.query('BEGIN');
    await other.query(`UPDATE "Thread" SET "updatedAt" = "updatedAt" WHERE id = $1`, [first.newThreadId]);
    const next = newRun(first.userId, first.newThreadId);
    const accepted = store.accept(next, roomy);
    const waiting = async () => (await observer.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'atoll-deadlock-victim' AND wait_event_type = 'Lock'`)).rowCount! > 0;
    for (let i = 0; !(await waiting()); i++) {
      if (i === 500) throw new Error('the accept never waited for the conversation');
      await new Promise((r) => setTimeout(r, 10));
    }
    await other.query(`UPDATE "QueueUser" SET "servedAt" = "servedAt" WHERE "userId" = $1`, [first.userId]); // granted once the accept was rolled back
    await other.query('COMMIT');
    await expect(accepted).resolves.toMatchObject({ record: { id: next.id, status: 'queued' }, busy: [first.id] });
    expect((await rowsOf(next.id)).map((r) => r.what).sort()).toEqual(['event', 'message', 'run']);
  } finally {
    await Promise.all([other.end(), observer.end()]);
    await store.close();
  }
});

describe('claims', () => {
  // Each test starts from an empty queue: what earlier tests left waiting is finished.
  beforeEach(async () => {
    await db.query(`UPDATE "Run" SET status = 'completed' WHERE status IN ('queued', 'running')`);
  });

  test("a user's runs in order, one per claim, under the cap; `more` says whether a full claim left runs that could start", async () => {
    const u = user();
    const runs = [newRun(u), newRun(u), newRun(u)];
    for (const r of runs) await cluster.accept(r, roomy);
    const ids = async (claim: Promise<{ runs: { record: { id: string } }[]; more: boolean }>) => {
      const c = await claim;
      return { runs: c.runs.map((r) => r.record.id), more: c.more };
    };
    // Room for more than it took: no one else needs waking, whatever waits.
    expect(await ids(cluster.claim(lease, 10, 2))).toEqual({ runs: [runs[0]!.id], more: false });
    // Full, but the user's next run cannot start (2 of 2 started): no one is woken for it.
    expect(await ids(cluster.claim(lease, 1, 2))).toEqual({ runs: [runs[1]!.id], more: false });
    // At its cap of 2: nothing taken, and then never `more` (a claim that took nothing wakes no one).
    expect(await ids(cluster.claim(lease, 10, 2))).toEqual({ runs: [], more: false });
    await finish([runs[0]!.id]);
    const last = await cluster.claim(lease, 10, 2);
    expect(last.runs.map((r) => r.record.id)).toEqual([runs[2]!.id]);
    expect(last.runs[0]!.lastSeq).toBe(1); // the accept's message_received
    expect(last.more).toBe(false); // the queue is empty now
  });

  test('users in turn: a full claim says whether another user still waits', async () => {
    const [a, b] = [newRun(user()), newRun(user())];
    await cluster.accept(a, roomy);
    await cluster.accept(b, roomy);
    const first = await cluster.claim(lease, 1, 2);
    expect(first.runs).toHaveLength(1);
    expect(first.more).toBe(true); // full, and the other user's run waits: the other nodes are woken
    const second = await cluster.claim(lease, 1, 2);
    expect([...first.runs, ...second.runs].map((r) => r.record.id).sort()).toEqual([a.id, b.id].sort());
    expect(second.more).toBe(false); // full, and nothing waits: no one is woken
  });

  // A user who cannot start now (at its cap, or its oldest run's conversation busy) must not take the free worker's
  // turn from the users behind it: with one free worker, a claim that locked only that user took nothing, and
  // the others waited, a worker idle, until that user's run ended (minutes, for a model's run).
  test('a user at its cap does not hold up the users behind it, even with one free worker', async () => {
    const [a, b] = [user(), user()];
    const [a1, a2] = [newRun(a), newRun(a)];
    await cluster.accept(a1, roomy);
    await cluster.accept(a2, roomy);
    expect((await cluster.claim(lease, 1, 1)).runs.map((r) => r.record.id)).toEqual([a1.id]);
    // b arrives after a was served: a is first in turn, but at its cap of 1.
    const b1 = newRun(b);
    await cluster.accept(b1, roomy);
    const claim = await cluster.claim(lease, 1, 1);
    expect(claim.runs.map((r) => r.record.id)).toEqual([b1.id]);
    expect(claim.more).toBe(false); // full, and a's second run waits, but it cannot start: no node is woken for it
    await finish([a1.id]);
    expect((await cluster.claim(lease, 1, 1)).runs.map((r) => r.record.id)).toEqual([a2.id]);
  });

  test("a user whose oldest run's conversation is busy does not hold up the users behind it", async () => {
    const [a, b] = [user(), user()];
    const a1 = newRun(a);
    await cluster.accept(a1, roomy);
    const a2 = newRun(a, a1.newThreadId);
    await cluster.accept(a2, roomy);
    expect((await cluster.claim(lease, 1, 5)).runs.map((r) => r.record.id)).toEqual([a1.id]);
    const b1 = newRun(b);
    await cluster.accept(b1, roomy);
    expect((await cluster.claim(lease, 1, 5)).runs.map((r) => r.record.id)).toEqual([b1.id]);
    await finish([a1.id]);
    expect((await cluster.claim(lease, 1, 5)).runs.map((r) => r.record.id)).toEqual([a2.id]);
  });

  test('runs a single node left waiting (no QueueUser row) are claimed once a node registers', async () => {
    const left = newRun(user());
    await cluster.accept(left, roomy);
    await db.query(`DELETE FROM "QueueUser" WHERE "userId" = $1`, [left.userId]);
    expect((await cluster.claim(lease, 10, 5)).runs).toEqual([]);
    await cluster.register(`node-${randomUUID()}`, 60_000);
    expect((await cluster.claim(lease, 10, 5)).runs.map((r) => r.record.id)).toEqual([left.id]);
  });

  test('a claim whose answer was lost: releaseUnknown puts back what the node never heard of, and only that', async () => {
    const u = user();
    const [known, lost] = [newRun(u), newRun(u)];
    await cluster.accept(known, roomy);
    await cluster.accept(lost, roomy);
    expect((await cluster.claim(lease, 1, 5)).runs.map((r) => r.record.id)).toEqual([known.id]);
    // Committed, its answer lost: the run counts against the user's cap, and no node will claim it.
    expect((await cluster.claim(lease, 1, 5)).runs.map((r) => r.record.id)).toEqual([lost.id]);
    expect((await cluster.claim(lease, 10, 2)).runs).toEqual([]);
    expect(await cluster.releaseUnknown(lease, [known.id], stoppedEnding)).toEqual({ released: 1, ended: [] });
    expect(await cluster.releaseUnknown(lease, [known.id], stoppedEnding)).toEqual({ released: 0, ended: [] });
    const again = await cluster.claim(lease, 10, 2);
    expect(again.runs.map((r) => r.record.id)).toEqual([lost.id]);
    expect(again.runs[0]!.record.attempts).toBe(0); // never started: no attempt spent
  });

  test('a claim the server holds up past the read timeout: releaseUnknown ends its backend first, so nothing it took stays unknown', async () => {
    // 2 s: the ending (pg_terminate_backend waits for the exit) is bound by the same read timeout.
    const store = createPgClusterStore(createPool({ ...writePoolConfig(db.url, 1), query_timeout: 2_000 }, quiet), createPool(writePoolConfig(db.url, 1), quiet), quiet);
    const run = newRun(user());
    await cluster.accept(run, roomy);
    const commits = await holdCommits(db, 'Run', 'UPDATE', `NEW.id = '${run.id}' AND NEW.owner IS NOT NULL`);
    try {
      await expect(store.claim(lease, 1, 5)).rejects.toMatchObject({ code: 'DB_UNAVAILABLE' });
      expect(await store.releaseUnknown(lease, [], stoppedEnding)).toEqual({ released: 0, ended: [] });
    } finally {
      // Left running, the claim would commit now, after releaseUnknown looked: the run held by this lease, unknown to it.
      await commits.release();
      await store.close();
    }
    expect(await db.query(`SELECT status, owner FROM "Run" WHERE id = $1`, [run.id])).toEqual([{ status: 'queued', owner: null }]);
    expect((await cluster.claim(lease, 1, 5)).runs.map((r) => r.record.id)).toEqual([run.id]);
  });

  test("a user's runs start in the order they were accepted, whatever the accepting nodes' clocks say", async () => {
    const u = user();
    const first = newRun(u);
    // Accepted first by a node whose clock runs a second ahead of the next one's.
    const ahead = new Date(clock + 1000).toISOString();
    first.firstEvent = { ...first.firstEvent, timestamp: ahead };
    const second = newRun(u);
    await cluster.accept(first, roomy);
    await cluster.accept(second, roomy);
    expect((await cluster.claim(lease, 1, 5)).runs.map((r) => r.record.id)).toEqual([first.id]);
    expect((await cluster.claim(lease, 1, 5)).runs.map((r) => r.record.id)).toEqual([second.id]);
  });

  test("a waiting run's place in line (run_queued) follows the same order, not the accepting nodes' clocks", async () => {
    const u = user();
    const first = newRun(u);
    first.firstEvent = { ...first.firstEvent, timestamp: new Date(clock + 1000).toISOString() };
    const second = newRun(u);
    await cluster.accept(first, roomy);
    await cluster.accept(second, roomy);
    const notices = await cluster.noticeWaiting([second.id, first.id], (run, lastSeq, position) => ({ ...second.firstEvent, run_id: run.id, seq: lastSeq + 1, type: 'run_queued', payload: { position } }) as RunEventEnvelope);
    expect(Object.fromEntries(notices.map((e) => [e.run_id, (e.payload as { position: number }).position]))).toEqual({ [first.id]: 1, [second.id]: 2 });
  });

  test('a lease that expired claims nothing, taken over or not (its runs would be owned by no node, forever)', async () => {
    const u = user();
    const run = newRun(u);
    await cluster.accept(run, roomy);
    const { lease: dying } = await cluster.register(`node-${randomUUID()}`, 100);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await cluster.claim(dying, 5, 5)).runs).toEqual([]);
    // Taken over: its Node row is gone (with any other expired lease of this file's tests).
    let swept = 0;
    while (await cluster.takeOverExpired(() => ({ kind: 'requeue' as const }))) swept++;
    expect(swept).toBeGreaterThan(0);
    expect((await cluster.claim(dying, 5, 5)).runs).toEqual([]);
    // The live lease still gets the run.
    expect((await cluster.claim(lease, 5, 5)).runs.map((r) => r.record.id)).toContain(run.id);
  });

  test('runs whose stop was asked while their node was dying end cancelled at the takeover, started or not: never run again', async () => {
    const [started, waiting] = [newRun(user()), newRun(user())];
    for (const r of [started, waiting]) await cluster.accept(r, roomy);
    const { lease: dying } = await cluster.register(`node-${randomUUID()}`, 300);
    expect((await cluster.claim(dying, 5, 5)).runs.map((r) => r.record.id).sort()).toEqual([started.id, waiting.id].sort());
    await db.query(`UPDATE "Run" SET status = 'running', "startedAt" = now(), attempts = 1 WHERE id = $1`, [started.id]);
    const build = () => {
      throw new Error('a run held by a node is not ended by the stop itself');
    };
    for (const r of [started, waiting]) expect(await cluster.stop(r.userId, r.id, build)).toMatchObject({ kind: 'held' });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const events: RunEventEnvelope[] = [];
    for (let taken; (taken = await cluster.takeOverExpired(takeoverRule({ maxRunAttempts: 3, repeatable: () => true }))); ) events.push(...taken.events);
    const ends = Object.fromEntries(events.map((e) => [e.run_id, [e.type, (e.payload as { status?: string }).status, (e.payload as { error?: { code: string } }).error?.code]]));
    expect(ends).toEqual({ [started.id]: ['agent_completed', 'cancelled', 'CANCELLED'], [waiting.id]: ['agent_completed', 'cancelled', 'CANCELLED'] });
    expect((await cluster.claim(lease, 5, 5)).runs).toEqual([]);
    expect(await db.query(`SELECT status FROM "Run" WHERE id = ANY($1)`, [[started.id, waiting.id]])).toEqual([{ status: 'cancelled' }, { status: 'cancelled' }]);
  });

  // A node that no longer tracks a run it holds (draining, or a claim whose answer it never heard) could not act on a
  // stop asked through another node, and the claim does not read the flag: given back to the queue, the run was
  // claimed and started elsewhere after its stop was acknowledged (helper-78).
  test('runs whose stop was asked while a node held them end cancelled when it gives them back (release, releaseUnknown, deregister): never claimed', async () => {
    const u = user();
    const build = () => {
      throw new Error('a run held by a node is not ended by the stop itself');
    };
    const { lease: giving } = await cluster.register(`node-${randomUUID()}`, 60_000);
    const claimOne = async () => (await cluster.claim(giving, 1, 5)).runs.map((r) => r.record.id);
    const [released, unknown, deregistered, untouched] = [newRun(u), newRun(u), newRun(u), newRun(u)];
    const ends: Record<string, string[]> = {};
    const note = (how: string, events: RunEventEnvelope[]) => (ends[how] = events.map((e) => `${e.run_id === untouched.id ? 'untouched' : e.run_id}:${e.type}:${(e.payload as { status?: string }).status}`));
    await cluster.accept(released, roomy);
    expect(await claimOne()).toEqual([released.id]);
    expect(await cluster.stop(u, released.id, build)).toMatchObject({ kind: 'held' });
    note('release', await cluster.release(giving, [released.id], stoppedEnding));
    await cluster.accept(unknown, roomy);
    expect(await claimOne()).toEqual([unknown.id]);
    expect(await cluster.stop(u, unknown.id, build)).toMatchObject({ kind: 'held' });
    const afterLostClaim = await cluster.releaseUnknown(giving, [], stoppedEnding);
    expect(afterLostClaim.released).toBe(0);
    note('releaseUnknown', afterLostClaim.ended);
    for (const r of [deregistered, untouched]) await cluster.accept(r, roomy);
    expect(await claimOne()).toEqual([deregistered.id]);
    expect(await cluster.stop(u, deregistered.id, build)).toMatchObject({ kind: 'held' });
    note('deregister', await cluster.deregister(giving, stoppedEnding));
    expect(ends).toEqual({
      release: [`${released.id}:agent_completed:cancelled`],
      releaseUnknown: [`${unknown.id}:agent_completed:cancelled`],
      deregister: [`${deregistered.id}:agent_completed:cancelled`],
    });
    // None of them goes to another node: only the run nobody stopped.
    expect((await cluster.claim(lease, 10, 5)).runs.map((r) => r.record.id)).toEqual([untouched.id]);
    // Held by no lease any more: a late write of the one that gave them back is fenced.
    expect(await db.query(`SELECT "status", "owner" FROM "Run" WHERE "id" = ANY($1)`, [[released.id, unknown.id, deregistered.id]])).toEqual(Array(3).fill({ status: 'cancelled', owner: null }));
    await finish([untouched.id]);
  });

  test('a drain racing a claim of its own lease leaves no run owned by the lease it deletes', async () => {
    const run = newRun(user());
    await cluster.accept(run, roomy);
    const { lease: draining } = await cluster.register(`node-${randomUUID()}`, 60_000);
    const claimer = new pg.Client({ connectionString: db.url });
    await claimer.connect();
    try {
      await claimer.query('BEGIN');
      const { rows } = await claimer.query('SELECT "id" FROM atoll_claim($1, 1, 5)', [draining]);
      expect(rows).toEqual([{ id: run.id }]);
      const drained = cluster.deregister(draining, stoppedEnding);
      await new Promise((resolve) => setTimeout(resolve, 200));
      await claimer.query('COMMIT');
      await drained;
    } finally {
      await claimer.end();
    }
    expect(await db.query(`SELECT "owner", "status" FROM "Run" WHERE "id" = $1`, [run.id])).toEqual([{ owner: null, status: 'queued' }]);
  });

  test('one run per conversation: the second waits until the first ends', async () => {
    const u = user();
    const first = newRun(u);
    await cluster.accept(first, roomy);
    const second = newRun(u, first.newThreadId);
    await cluster.accept(second, roomy);
    const claim = await cluster.claim(lease, 10, 5);
    expect(claim.runs.map((r) => r.record.id)).toEqual([first.id]);
    expect(claim.more).toBe(false);
    expect((await cluster.claim(lease, 10, 5)).runs).toEqual([]);
    await finish([first.id]);
    expect((await cluster.claim(lease, 10, 5)).runs.map((r) => r.record.id)).toEqual([second.id]);
  });
});

// A node cut off from the database keeps its acknowledged writes and sends them again once it answers
// (group-commit.ts), which can be while another node's takeover holds the run: the fence read the owner from the
// statement's snapshot, so the write reported success, its events entered the log behind the takeover's back, and its
// status change was dropped; the run was then claimed again and run from the start after them (helper-78).
test("a late write of a lease taken over is fenced even when it lands while the takeover holds the run", async () => {
  const run = newRun(user());
  await cluster.accept(run, roomy);
  const { lease: lost } = await cluster.register(`node-${randomUUID()}`, 300);
  const [claimed] = (await cluster.claim(lost, 1, 5)).runs;
  expect(claimed!.record.id).toBe(run.id);
  await new Promise((resolve) => setTimeout(resolve, 500));
  // The sweeping node's takeover, held just before it puts the run back (its rows locked, its decision made).
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  let held!: () => void;
  const atHold = new Promise<void>((resolve) => (held = resolve));
  const requeue = queueStatements.requeue([[]]).name;
  const sweeperPool = aroundQueries(createPool(writePoolConfig(db.url, 2), quiet), async (query, q, rest) => {
    if ((q as { name?: string })?.name === requeue) {
      held();
      await opened;
    }
    return query(q, ...rest);
  });
  const sweeper = createPgClusterStore(sweeperPool, createPool(writePoolConfig(db.url, 1), quiet), quiet);
  const writesPool = createPool(writePoolConfig(db.url, 1), quiet);
  const writes = createPgRunWrites(writesPool, { ...quiet, info: () => undefined });
  try {
    const takeover = sweeper.takeOverExpired(takeoverRule({ maxRunAttempts: 3, repeatable: () => false }));
    await atHold;
    // The lost lease's kept writes reach the database now: the run started, its first events.
    const record = claimed!.record;
    const late = Promise.allSettled([
      writes.markRunning(run.id, 'cell1-g1', 0, new Date(), 1, lost),
      writes.appendEvents([envelopeOf(record, 2, 'agent_started', { status: 'running', message: '' } as never), envelopeOf(record, 3, 'partial_result', { text: 'done by the lost lease' } as never)], lost),
    ]);
    // Both wait behind the takeover's lock; then it goes on.
    await new Promise((resolve) => setTimeout(resolve, 300));
    open();
    await takeover;
    const settled = await late;
    expect(settled.map((s) => (s.status === 'rejected' ? (s.reason as Error).constructor.name : s.status))).toEqual([FencedError.name, FencedError.name]);
    expect(await db.query(`SELECT "seq", "type" FROM "RunEvent" WHERE "runId" = $1 ORDER BY "seq"`, [run.id])).toEqual([{ seq: 1, type: 'message_received' }]);
  } finally {
    open();
    await writes.commits.close(1000);
    await writesPool.end();
    await sweeper.close();
  }
});

// A stop, a give-back or a takeover whose COMMIT's answer was lost threw, and its terminal event, committed, was
// published by nobody: the user's sockets heard it only if they replayed for another reason (nothing follows a
// terminal event to reveal the gap). The store keeps such events and settleDoubts gives them once the database
// says the transaction committed (helper-79).
describe("events of transactions whose COMMIT's answer was lost", () => {
  /** Ends the runs earlier tests left waiting, so a claim takes `runId`. */
  const onlyWaiting = (runId: string) => db.query(`UPDATE "Run" SET status = 'completed' WHERE status = 'queued' AND owner IS NULL AND id <> $1`, [runId]);
  const terminals = ({ events }: { events: RunEventEnvelope[] }) => events.map((e) => `${e.run_id}:${e.type}:${(e.payload as { status?: string }).status ?? ''}`);

  test('a stop and a takeover that committed: their events are given once, at the next settle', async () => {
    const losing = losingCommitAnswers(createPool(writePoolConfig(db.url, 1), quiet));
    const store = createPgClusterStore(losing.pool, createPool(writePoolConfig(db.url, 1), quiet), quiet);
    try {
      const waiting = newRun(user());
      await cluster.accept(waiting, roomy);
      losing.loseNext();
      await expect(store.stop(waiting.userId, waiting.id, stoppedEnding)).rejects.toMatchObject({ code: 'DB_UNAVAILABLE' });
      expect(await db.query(`SELECT status FROM "Run" WHERE id = $1`, [waiting.id])).toEqual([{ status: 'cancelled' }]);
      expect(terminals(await store.settleDoubts())).toEqual([`${waiting.id}:agent_completed:cancelled`]);
      expect(await store.settleDoubts()).toEqual({ events: [], pending: 0 });

      const held = newRun(user());
      await cluster.accept(held, roomy);
      await onlyWaiting(held.id);
      const { lease: dying } = await cluster.register(`node-${randomUUID()}`, 300);
      expect((await cluster.claim(dying, 1, 5)).runs.map((r) => r.record.id)).toEqual([held.id]);
      await db.query(`UPDATE "Run" SET status = 'running', "startedAt" = now(), attempts = 1 WHERE id = $1`, [held.id]);
      await new Promise((resolve) => setTimeout(resolve, 500));
      losing.loseNext();
      await expect(store.takeOverExpired(takeoverRule({ maxRunAttempts: 3, repeatable: () => false }))).rejects.toThrow(/Connection terminated/);
      expect(terminals(await store.settleDoubts())).toEqual([`${held.id}:agent_completed:failed`]);
      expect(await store.settleDoubts()).toEqual({ events: [], pending: 0 });
    } finally {
      await store.close();
    }
  });

  test('a give-back whose COMMIT was rolled back: nothing is given, and the run is still held', async () => {
    // The server answered the COMMIT with a rollback (as it does for a transaction a statement aborted), and that
    // answer was lost.
    let lose = false;
    const rollingBack = aroundQueries(createPool(writePoolConfig(db.url, 1), quiet), async (query, q, rest) => {
      if (q === 'COMMIT' && lose) {
        lose = false;
        await query('ROLLBACK');
        throw new Error('Connection terminated unexpectedly');
      }
      return query(q, ...rest);
    });
    const store = createPgClusterStore(rollingBack, createPool(writePoolConfig(db.url, 1), quiet), quiet);
    try {
      const run = newRun(user());
      await cluster.accept(run, roomy);
      await onlyWaiting(run.id);
      const { lease: giving } = await cluster.register(`node-${randomUUID()}`, 60_000);
      expect((await cluster.claim(giving, 1, 5)).runs.map((r) => r.record.id)).toEqual([run.id]);
      expect(await cluster.stop(run.userId, run.id, stoppedEnding)).toMatchObject({ kind: 'held' });
      lose = true;
      await expect(store.release(giving, [run.id], stoppedEnding)).rejects.toMatchObject({ code: 'DB_UNAVAILABLE' });
      expect(await store.settleDoubts()).toEqual({ events: [], pending: 0 });
      expect(await db.query(`SELECT status, owner FROM "Run" WHERE id = $1`, [run.id])).toEqual([{ status: 'queued', owner: giving }]);
      // Given back for real, its ending is told by the call itself.
      expect(terminals({ events: await store.release(giving, [run.id], stoppedEnding) })).toEqual([`${run.id}:agent_completed:cancelled`]);
      expect(await store.settleDoubts()).toEqual({ events: [], pending: 0 });
    } finally {
      await store.close();
    }
  });

  test('a COMMIT the server still holds: asked again until it lands, then given', async () => {
    const store = createPgClusterStore(createPool({ ...writePoolConfig(db.url, 1), query_timeout: 1_000 }, quiet), createPool(writePoolConfig(db.url, 1), quiet), quiet);
    const run = newRun(user());
    await cluster.accept(run, roomy);
    const commits = await holdCommits(db, 'Run', 'UPDATE', `NEW.id = '${run.id}' AND NEW.status = 'cancelled'`);
    try {
      await expect(store.stop(run.userId, run.id, stoppedEnding)).rejects.toMatchObject({ code: 'DB_UNAVAILABLE' });
      expect(await commits.waiting()).toBe(1);
      expect(await store.settleDoubts()).toEqual({ events: [], pending: 1 });
    } finally {
      await commits.release();
    }
    try {
      expect(terminals(await store.settleDoubts())).toEqual([`${run.id}:agent_completed:cancelled`]);
      expect(await store.settleDoubts()).toEqual({ events: [], pending: 0 });
    } finally {
      await store.close();
    }
  });

  // After a failover to a standby that never had the transaction, or a restore, its id is one the database has not
  // reached: pg_xact_status raised an error, and that one doubt held up every other for good (helper-83).
  test('a doubt whose id the database has not reached holds up no other, and is settled by the rows it wrote', async () => {
    let lose = 0;
    let forge = false;
    const pool = aroundQueries(createPool(writePoolConfig(db.url, 1), quiet), async (query, q, rest) => {
      const result = (await query(q, ...rest)) as { rows: { xid?: string }[] };
      if (forge && typeof q === 'object' && (q as { text?: string }).text?.includes('pg_current_xact_id')) {
        forge = false;
        result.rows[0]!.xid = '999999999999';
      }
      if (q === 'COMMIT' && lose > 0) {
        lose--;
        throw new Error('Connection terminated unexpectedly');
      }
      return result;
    });
    const store = createPgClusterStore(pool, createPool(writePoolConfig(db.url, 1), quiet), quiet);
    try {
      const [first, second] = [newRun(user()), newRun(user())];
      await cluster.accept(first, roomy);
      await cluster.accept(second, roomy);
      lose = 2;
      forge = true;
      await expect(store.stop(first.userId, first.id, stoppedEnding)).rejects.toMatchObject({ code: 'DB_UNAVAILABLE' });
      await expect(store.stop(second.userId, second.id, stoppedEnding)).rejects.toMatchObject({ code: 'DB_UNAVAILABLE' });
      // Both committed: the log holds both endings, whatever the first's id says.
      expect(terminals(await store.settleDoubts()).sort()).toEqual([`${first.id}:agent_completed:cancelled`, `${second.id}:agent_completed:cancelled`].sort());
      expect(await store.settleDoubts()).toEqual({ events: [], pending: 0 });
    } finally {
      await store.close();
    }
  });
});
