/**
 * Without REDIS_URL a node holds its database alone (tests/node-lock.test.ts: a second such node refuses to start,
 * on both stores); a node started as one of a cluster (REDIS_URL set) refuses too, and says what to do.
 */
import { startTestCluster, type TestCluster } from '../helpers/cluster';
import { SHARED_REDIS_URL, freshKeyPrefix } from '../../scripts/cluster/redis';

jest.setTimeout(180_000);

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster({ nodes: 1, redis: false });
}, 300_000);

afterAll(async () => {
  await cluster?.destroy();
});

test('a cluster node (REDIS_URL set) refuses to start beside a single node, in one line saying what to do', async () => {
  await expect(cluster.start(2, { env: { REDIS_URL: SHARED_REDIS_URL, REDIS_KEY_PREFIX: freshKeyPrefix() } })).rejects.toThrow(/exited \(1\) before listening/);
  const refused = cluster.node(2).stderr().trim();
  expect(refused).toMatch(/^atoll: failed to start: a single-node Atoll \(started without REDIS_URL\) is using .*: stop it, or start it with REDIS_URL like this node$/);
  expect(refused.split('\n')).toHaveLength(1);
  // The single node is untouched by the attempt.
  expect((await fetch(`${cluster.url(1)}/readyz`)).status).toBe(200);
});
