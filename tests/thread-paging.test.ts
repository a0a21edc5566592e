/**
 * GET /v1/threads pages by (updated_at, id): threads updated in the same millisecond are each listed once, however
 * small the pages (the cursor used to be the time alone, skipping the rest of a page boundary's millisecond).
 */
import { startServer, type TestServer } from './helpers/server';
import { UserClient } from './helpers/client';
import fs from 'node:fs';
import { queryTestDatabase, TEST_STORE } from './helpers/test-database';

let server: TestServer;
let u: UserClient;
const ids: string[] = [];

beforeAll(async () => {
  server = await startServer();
  u = await UserClient.connect(server.url, 'thread-pager');
  for (let i = 0; i < 12; i++) ids.push((await u.http('POST', '/v1/threads', { title: `t${i}` })).body.id);
  // Eight of them (t2…t9) updated at the same moment, t5's, as a burst of runs can leave them; the others
  // before and after it.
  const shared = ids.slice(2, 10);
  await queryTestDatabase(server.dir, `UPDATE "Thread" SET "updatedAt" = (SELECT "updatedAt" FROM "Thread" WHERE "id" = ?) WHERE "id" IN (${shared.map(() => '?').join(', ')})`, [ids[5], ...shared]);
}, 60_000);
afterAll(async () => {
  u.close();
  await server.stop();
});

async function pageThrough(limit: number): Promise<string[]> {
  const listed: string[] = [];
  let before: string | null = null;
  for (let pages = 0; pages < 50; pages++) {
    const res = await u.http('GET', `/v1/threads?limit=${limit}${before === null ? '' : `&before=${encodeURIComponent(before)}`}`);
    expect(res.status).toBe(200);
    listed.push(...res.body.threads.map((t: { id: string }) => t.id));
    before = res.body.next_before;
    if (before === null) return listed;
  }
  throw new Error('paging did not end');
}

test('threads sharing an updated_at are each listed exactly once, in one order, whatever the page size', async () => {
  const all = (await u.http('GET', '/v1/threads?limit=100')).body.threads as { id: string; updated_at: string }[];
  expect(all).toHaveLength(12);
  const stamp = all.find((t) => t.id === ids[5])!.updated_at;
  expect(all.filter((t) => t.updated_at === stamp)).toHaveLength(8);
  for (const limit of [1, 3, 5]) expect([limit, await pageThrough(limit)]).toEqual([limit, all.map((t) => t.id)]);
});

test('before also takes an ISO time (the threads updated before it), and refuses anything else', async () => {
  const all = (await u.http('GET', '/v1/threads?limit=100')).body.threads as { id: string; updated_at: string }[];
  const shared = all.find((t) => t.id === ids[5])!.updated_at;
  const older = (await u.http('GET', `/v1/threads?limit=100&before=${encodeURIComponent(shared)}`)).body.threads.map((t: { id: string }) => t.id);
  expect(older.length).toBeGreaterThan(0); // t0 and t1, at least
  expect(older.sort()).toEqual(ids.filter((id) => !all.some((t) => t.id === id && t.updated_at >= shared)).sort());
  for (const bad of ['yesterday', `${shared}~`, `${shared}~a b`, `x~${ids[0]}`]) {
    const res = await u.http('GET', `/v1/threads?before=${encodeURIComponent(bad)}`);
    expect([bad, res.status, res.body.error?.code]).toEqual([bad, 400, 'BAD_REQUEST']);
  }
});

// README, get_thread_history: "default 50, max 100; `after` = message id cursor", and `next_after` non-null
// whenever more may follow, null at the end. (The size cap and its cursor: outbound-budget.test.ts.)
test('get_thread_history: 50 messages by default, at most 100 (101 is refused), next_after until null', async () => {
  const h = await UserClient.connect(server.url, 'history-pager');
  try {
    // 30 runs on one thread: 60 messages (each run's input and its answer).
    const first = await h.start({ agent: 'echo', input: 'm0' });
    const runs = [first.run_id];
    for (let i = 1; i < 30; i++) runs.push((await h.start({ agent: 'echo', input: `m${i}`, thread_id: first.thread_id })).run_id);
    for (const runId of runs) await h.waitForRun(runId);
    const thread_id = first.thread_id;

    const page = await h.ack('get_thread_history', { thread_id });
    expect(page.messages).toHaveLength(50);
    expect(page.next_after).toBe(page.messages[49].id);
    const rest = await h.ack('get_thread_history', { thread_id, after: page.next_after });
    expect(rest.messages).toHaveLength(10);
    expect(rest.next_after).toBeNull();
    const ids = [...page.messages, ...rest.messages].map((m: { id: number }) => m.id);
    expect(new Set(ids).size).toBe(60);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));

    const whole = await h.ack('get_thread_history', { thread_id, limit: 100 });
    expect(whole.messages.map((m: { id: number }) => m.id)).toEqual(ids);
    expect(whole.next_after).toBeNull();
    expect(await h.ack('get_thread_history', { thread_id, limit: 101 })).toMatchObject({ error: { code: 'BAD_REQUEST', message: expect.stringMatching(/limit/) } });
  } finally {
    h.close();
  }
}, 120_000);

/** CPU the process has spent (user + system, all its threads), in ms. */
const cpuMs = (pid: number): number => {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
};

// A user may hold any number of threads (20 a second of POST /v1/threads, within its budget, are 72,000 an hour).
// The cursor's OR hid the (userId, updatedAt) range from SQLite, which walked every thread newer than the cursor
// for each page on the front's event loop: ~30 ms per page 100,000 threads deep (the ISO form, a plain range: ~4),
// so one user paging deep at its budget took the front's CPU from ~110 to ~440 ms a second and another user's run
// p95 from 22 to 83 ms (helper-102).
test('a page deep in a user\'s 100,000 threads costs the front what a page near the top does', async () => {
  const many = await UserClient.connect(server.url, 'thread-hoarder');
  try {
    expect((await many.http('POST', '/v1/threads', {})).status).toBe(201); // its User row
    const count = 100_000;
    // Inserted directly, 50 ms apart (as fast as its budget creates them), in 2025: older than the one above.
    const insert =
      TEST_STORE === 'sqlite'
        ? `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ${count - 1}) INSERT INTO "Thread" ("id", "userId", "title", "createdAt", "updatedAt") SELECT 'bulk-' || i, ?, NULL, t, t FROM (SELECT i, strftime('%Y-%m-%dT%H:%M:%f', 1764979200 + i * 0.05, 'unixepoch') || '+00:00' AS t FROM n)`
        : `INSERT INTO "Thread" ("id", "userId", "title", "createdAt", "updatedAt") SELECT 'bulk-' || i, ?, NULL, t, t FROM (SELECT i, timestamp '2025-12-06' + i * interval '50 milliseconds' AS t FROM generate_series(0, ${count - 1}) i) s`;
    await queryTestDatabase(server.dir, insert, ['thread-hoarder']);
    // The fifth thread's time: a cursor there has (nearly) every thread newer than it; the ISO time reads the same page.
    const deep = '2025-12-06T00:00:00.250Z';
    const cursorPage = await many.http('GET', `/v1/threads?limit=100&before=${encodeURIComponent(`${deep}~bulk-5`)}`);
    expect(cursorPage.body.threads.map((t: { id: string }) => t.id)).toEqual(['bulk-4', 'bulk-3', 'bulk-2', 'bulk-1', 'bulk-0']);
    const cost = async (before: string) => {
      const cpu = cpuMs(server.proc.pid!);
      for (let i = 0; i < 30; i++) expect((await many.http('GET', `/v1/threads?limit=100&before=${encodeURIComponent(before)}`)).status).toBe(200);
      return cpuMs(server.proc.pid!) - cpu;
    };
    await cost(deep); // warm
    const isoMs = await cost(deep);
    const cursorMs = await cost(`${deep}~bulk-5`);
    process.stdout.write(`30 pages 100,000 threads deep: front CPU ${cursorMs} ms by cursor, ${isoMs} ms by ISO time\n`);
    // Before the fix, on SQLite: 880 ms against 50 (PostgreSQL planned both well: BitmapOr or a backward index scan).
    expect(cursorMs).toBeLessThan(2 * isoMs + 150);
  } finally {
    many.close();
  }
}, 120_000);
