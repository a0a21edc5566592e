/**
 * README, Sizing ("PostgreSQL connections") and Database ("connections a node opens"): a node opens DB_POOL_SIZE + 1
 * connections (reads and the worker gate; writes), plus 1 for the node lock and, with REDIS_URL, 2 for the shared
 * queue's transactions and 1 for the lease: 9 per node by default; cells and workers open none. Counted here in
 * PostgreSQL's own pg_stat_activity while a node serves bursts of reads and runs: never more, and all of them once
 * the bursts have used every pool (a pool keeps an idle connection 30 s).
 */
import type pg from 'pg';
import { UserClient, httpCall, metricValue } from '../helpers/client';
import { startTestCluster, type TestCluster } from '../helpers/cluster';

jest.setTimeout(180_000);

/** Connections to the cluster's database other than `observer`'s own, by application_name. */
async function connectionsBy(observer: pg.Client, database: string): Promise<Record<string, number>> {
  const { rows } = await observer.query<{ app: string; n: number }>(
    `SELECT application_name AS app, count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() GROUP BY 1`,
    [database],
  );
  return Object.fromEntries(rows.map((r) => [r.app, r.n]));
}
const total = (by: Record<string, number>) => Object.values(by).reduce((a, b) => a + b, 0);

/**
 * Bursts of concurrent reads (the read pool) and runs (accepts, events and finishes on the write connection; in a
 * cluster, accepts and claims on the shared queue's pool) until the node holds `expected` connections, sampling
 * pg_stat_activity throughout: returns the most seen at once and the last count.
 */
async function saturate(cluster: TestCluster, expected: number): Promise<{ most: number; mostBy: Record<string, number>; last: Record<string, number> }> {
  const observer = await cluster.database.connect();
  const database = new URL(cluster.database.url).pathname.slice(1);
  const users = await Promise.all(['pool-a', 'pool-b', 'pool-c', 'pool-d'].map((id) => UserClient.connect(cluster.url(1), id)));
  let most = 0;
  let mostBy: Record<string, number> = {};
  let last: Record<string, number> = {};
  const sample = async () => {
    last = await connectionsBy(observer, database);
    if (total(last) > most) [most, mostBy] = [total(last), last];
  };
  try {
    for (let round = 0; round < 20 && total(last) < expected; round++) {
      let busy = true;
      const sampler = (async () => {
        while (busy) await sample();
      })();
      const reads = Array.from({ length: 32 }, (_, i) => users[i % users.length]!.http('GET', '/v1/threads'));
      const runs = users.flatMap((u) => [0, 1, 2].map(async () => u.waitForRun((await u.start({ agent: 'echo', input: 'x' })).run_id)));
      await Promise.all([...reads, ...runs]);
      busy = false;
      await sampler;
      await sample();
    }
    return { most, mostBy, last };
  } finally {
    users.forEach((u) => u.close());
    await observer.end();
  }
}

describe('a single node (no REDIS_URL), DB_POOL_SIZE=2', () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await startTestCluster({ nodes: 1, redis: false, env: { DB_POOL_SIZE: '2' } });
  }, 300_000);
  afterAll(() => cluster?.destroy());

  test('opens DB_POOL_SIZE + 1 connections and the node lock\'s: 4, never more', async () => {
    const { most, mostBy, last } = await saturate(cluster, 4);
    expect({ most, mostBy }).toEqual({ most: 4, mostBy: expect.anything() });
    expect(last).toEqual({ atoll: 3, 'atoll-node-lock': 1 });
    // The front's own count (atoll_db_connections) says the same.
    expect(metricValue((await httpCall(cluster.url(1), 'GET', '/metrics')).body, 'atoll_db_connections', { process: 'front' })).toBe(4);
  });
});

describe('a cluster node (REDIS_URL), DB_POOL_SIZE left at its default', () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await startTestCluster({ nodes: 1 });
  }, 300_000);
  afterAll(() => cluster?.destroy());

  test('opens 9: DB_POOL_SIZE (4) + 1, the node lock, the shared queue\'s 2 and the lease\'s 1, never more', async () => {
    const { most, mostBy, last } = await saturate(cluster, 9);
    expect({ most, mostBy }).toEqual({ most: 9, mostBy: expect.anything() });
    expect(last).toEqual({ atoll: 8, 'atoll-node-lock': 1 });
    expect(metricValue((await httpCall(cluster.url(1), 'GET', '/metrics')).body, 'atoll_db_connections', { process: 'front' })).toBe(9);
  });
});
