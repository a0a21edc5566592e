/**
 * USER_MAX_STORED_BYTES holds across nodes: what a user's runs store through one node counts where it asks next
 * (the count is in PostgreSQL, kept by every node's writes), and a thread deleted through another node than the
 * one its runs ran on frees the user everywhere.
 */
import { httpCall, terminal, UserClient } from '../helpers/client';
import { startTestCluster, type TestCluster } from '../helpers/cluster';

jest.setTimeout(120_000);

const LIMIT = 60_000;
let cluster: TestCluster;
const open: UserClient[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ nodes: 2, env: { USER_MAX_STORED_BYTES: String(LIMIT) } });
}, 300_000);

afterAll(async () => {
  open.forEach((c) => c.close());
  await cluster?.destroy();
});

const counted = async (user: string) => Number((await cluster.query('SELECT "bytes" FROM "UserStorage" WHERE "userId" = $1', [user]))[0]?.bytes ?? 0);

test('runs through node 1 fill the cap, node 2 refuses; a delete through node 2 frees node 1', async () => {
  const user = 'quota-cluster';
  const first = await UserClient.connect(cluster.url(1), user);
  const second = await UserClient.connect(cluster.url(2), user);
  open.push(first, second);
  const threads: string[] = [];
  while ((await counted(user)) < LIMIT) {
    const run = await first.start({ agent: 'echo', input: 'x'.repeat(12_000) });
    threads.push(run.thread_id);
    expect(terminal(await first.waitForRun(run.run_id, 60_000)).payload.status).toBe('completed');
    expect(threads.length).toBeLessThan(10);
  }
  expect((await second.ack('start_agent', { agent: 'echo', input: 'over' })).error).toMatchObject({ code: 'STORAGE_QUOTA_EXCEEDED' });
  expect((await httpCall(cluster.url(2), 'GET', '/v1/usage', undefined, cluster.token(user))).body).toEqual({ stored_bytes: await counted(user), max_stored_bytes: LIMIT });
  for (const id of threads) expect((await httpCall(cluster.url(2), 'DELETE', `/v1/threads/${id}`, undefined, cluster.token(user))).status).toBe(204);
  expect(await counted(user)).toBe(0);
  const again = await first.start({ agent: 'echo', input: 'room again' });
  expect(terminal(await first.waitForRun(again.run_id, 60_000)).payload.final_response).toBe('room again');
});
