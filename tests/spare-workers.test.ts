/**
 * Warm spares are fresh workers, and follow the churn (workers/cell/spare-workers.ts). At rest a cell holds
 * THREADS_PER_CELL + WARM_SPARE_THREADS workers; when a new user takes the last fresh one, another starts; each run
 * whose worker ends with it (here: a global left behind, so the worker is recycled) makes the cell keep up to
 * CHURN_SPARES more fresh workers, never more. With THREAD_REUSE=any, where any idle worker serves any user, it
 * keeps its minimum.
 */
import { startServer, type TestServer } from './helpers/server';
import { UserClient, eventually, httpCall, metricValue, terminal } from './helpers/client';

const ONE_CELL = { CELLS: '1', THREADS_PER_CELL: '2', WARM_SPARE_THREADS: '1', ENABLE_CHAOS_AGENTS: '1' };
/** THREADS_PER_CELL + WARM_SPARE_THREADS. */
const AT_REST = 3;

const threadsAlive = async (s: TestServer) => metricValue((await httpCall(s.url, 'GET', '/metrics')).body as string, 'atoll_threads_alive');

async function runOnce(u: UserClient, agent: string, input: Record<string, unknown>) {
  const { run_id } = await u.start({ agent, input });
  const final = terminal(await u.waitForRun(run_id)).payload;
  return { final, view: (await u.http('GET', `/v1/runs/${run_id}`)).body };
}

/** A run that leaves a global behind: completed, and its worker recycled. */
async function recycleOnce(u: UserClient) {
  const { final, view } = await runOnce(u, 'chaos', { mode: 'leak_global', text: 'x' });
  expect(final.status).toBe('completed');
  expect(view.isolation).toMatchObject({ recycled: 'globals_changed' });
}

/** The gauge, once it has held the same value over a few of the cell's stats reports (one a second). */
async function settledThreads(s: TestServer): Promise<number> {
  let last = -1;
  let same = 0;
  await eventually(async () => {
    const now = await threadsAlive(s);
    same = now === last ? same + 1 : 0;
    last = now;
    return same >= 3;
  }, 30_000, 500);
  return last;
}

describe('THREAD_REUSE=same_user (default)', () => {
  let server: TestServer;
  const users: UserClient[] = [];
  const connect = async (name: string) => {
    const u = await UserClient.connect(server.url, name);
    users.push(u);
    return u;
  };
  beforeAll(async () => {
    server = await startServer(ONE_CELL);
  });
  afterAll(async () => {
    users.forEach((u) => u.close());
    await server?.stop();
  });

  test('a new user taking the last spare starts another; a worker ending with its run, two more; never more however many end', async () => {
    expect(await settledThreads(server)).toBe(AT_REST);
    // Three users take the three fresh workers: the third took the spare, and a new one starts.
    for (const name of ['h1', 'h2', 'h3']) expect((await runOnce(await connect(name), 'echo', { text: name })).final.status).toBe('completed');
    expect(await settledThreads(server)).toBe(AT_REST + 1);
    // A worker ends with its run: beside the three users' workers, three fresh ones (the spare and two for the churn).
    await recycleOnce(await connect('churn-0'));
    expect(await settledThreads(server)).toBe(3 + 3);
    // Each of these users takes a fresh worker and loses it: the fresh ones are topped up to three, and that is all.
    for (let i = 1; i <= 4; i++) await recycleOnce(await connect(`churn-${i}`));
    expect(await settledThreads(server)).toBe(3 + 3);
  });
});

describe('THREAD_REUSE=any', () => {
  let server: TestServer;
  let user: UserClient;
  beforeAll(async () => {
    server = await startServer({ ...ONE_CELL, THREAD_REUSE: 'any' });
    user = await UserClient.connect(server.url, 'any-user');
  });
  afterAll(async () => {
    user?.close();
    await server?.stop();
  });

  test('workers that end are only replaced: the cell keeps its minimum', async () => {
    for (let i = 0; i < 3; i++) await recycleOnce(user);
    expect(await settledThreads(server)).toBe(AT_REST);
  });
});
