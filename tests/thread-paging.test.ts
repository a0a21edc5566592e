/**
 * GET /v1/threads pages by (updated_at, id): threads updated in the same millisecond are each listed once, however
 * small the pages (the cursor used to be the time alone, skipping the rest of a page boundary's millisecond).
 */
import { startServer, type TestServer } from './helpers/server';
import { UserClient } from './helpers/client';
import { queryTestDatabase } from './helpers/test-database';

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
