/**
 * Without REDIS_URL a node runs alone: a second node on the same PostgreSQL database refuses to start and says
 * why and what to do; a cluster node (REDIS_URL set) refuses to start beside it too.
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

test('a second single node on the same database exits at once, naming REDIS_URL', async () => {
  await expect(cluster.start(2)).rejects.toThrow(/exited \(1\) before listening/);
  const refused = cluster.node(2);
  expect(refused.stderr().trim()).toMatch(/^atoll: failed to start: another Atoll node is using the database postgresql:\/\/.*: without REDIS_URL a node runs alone.*set REDIS_URL/);
  expect(refused.stderr().trim().split('\n')).toHaveLength(1);
  // The first one is unharmed.
  expect((await fetch(`${cluster.url(1)}/readyz`)).status).toBe(200);
});

test('a cluster node (REDIS_URL set) refuses to start beside a single node', async () => {
  await expect(cluster.start(3, { env: { REDIS_URL: SHARED_REDIS_URL, REDIS_KEY_PREFIX: freshKeyPrefix() } })).rejects.toThrow(/exited \(1\) before listening/);
  expect(cluster.node(3).stderr()).toMatch(/a single-node Atoll \(started without REDIS_URL\) is using .*start it with REDIS_URL/);
});
