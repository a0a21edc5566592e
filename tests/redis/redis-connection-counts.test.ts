/**
 * Connection counts in Redis: caps per user and per address hold exactly across two nodes under a concurrent
 * burst; a release frees its slot for any node; the slots of a node that stopped renewing its lease are freed
 * once the lease lapses; a live node whose lease lapsed counts its slots again.
 */
import type { Redis } from 'ioredis';
import { CodedError } from '../../protocol/errors';
import type { RedisCluster } from '../../server/redis-cluster';
import { eventually } from '../helpers/client';
import { adminConnection, dropPrefix, scratchPrefix, startNode, stopNode } from '../helpers/redis-scratch';

let admin: Redis;
let prefix: string;
let nodes: RedisCluster[];

beforeEach(async () => {
  admin = adminConnection();
  prefix = scratchPrefix();
  nodes = [];
});

afterEach(async () => {
  for (const n of nodes) await stopNode(n);
  await dropPrefix(admin, prefix);
  await admin.quit();
});

async function node(id: string, leaseMs = 10_000): Promise<RedisCluster> {
  const n = await startNode(prefix, id, { maxConnectionsPerUser: 3, maxConnectionsPerIp: 5, nodeLeaseMs: leaseMs });
  nodes.push(n);
  return n;
}

type Claim = { release?: () => Promise<void>; error?: CodedError };

/** `n` concurrent claims, alternating between the nodes; socket ids `<tag><i>`. */
async function claims(on: RedisCluster[], n: number, tag: string, userId: (i: number) => string, ip: (i: number) => string): Promise<Claim[]> {
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      on[i % on.length].shared.connections.claim(`${tag}${i}`, userId(i), ip(i)).then(
        (release) => ({ release }),
        (error: CodedError) => ({ error }),
      ),
    ),
  );
}

/** The lease keys of node `id`'s processes (`conns:lease:<id>.<random>`: one per process, see connection-counts.ts). */
const leaseKeys = (id: string) => admin.keys(`${prefix}conns:lease:${id}.*`);

const passed = (cs: Claim[]) => cs.filter((c) => c.release);
const refusals = (cs: Claim[]) => cs.filter((c) => c.error).map((c) => `${c.error!.code}: ${c.error!.message}`);

test('per user: 30 claims at once over two nodes, exactly 3 pass; a release frees a slot for the other node', async () => {
  const [a, b] = [await node('node-a'), await node('node-b')];
  const first = await claims([a, b], 30, 's', () => 'dave', (i) => `10.0.0.${i}`);
  expect(passed(first)).toHaveLength(3);
  expect(new Set(refusals(first))).toEqual(new Set(['RATE_LIMITED: too many connections for this user (MAX_CONNECTIONS_PER_USER=3)']));
  expect(first.find((c) => c.error)!.error!.retryAfterSeconds).toBe(5);
  const release = passed(first)[0].release!;
  await release();
  await release();
  const second = await claims([b, a], 10, 't', () => 'dave', (i) => `10.0.1.${i}`);
  expect(passed(second)).toHaveLength(1);
  // Another user is not affected.
  expect(passed(await claims([a, b], 2, 'o', () => 'erin', () => '10.0.2.1'))).toHaveLength(2);
});

test('per address: 30 claims at once over two nodes, exactly 5 pass', async () => {
  const [a, b] = [await node('node-a'), await node('node-b')];
  const all = await claims([a, b], 30, 's', (i) => `user-${i}`, () => '198.51.100.1');
  expect(passed(all)).toHaveLength(5);
  expect(new Set(refusals(all))).toEqual(new Set(['RATE_LIMITED: too many connections from this address (MAX_CONNECTIONS_PER_IP=5)']));
});

test('the slots of a node that stops renewing its lease are freed once it lapses, not before', async () => {
  const dying = await node('node-dying', 1_000);
  const b = await node('node-b');
  expect(passed(await claims([dying], 3, 'd', () => 'frank', (i) => `10.1.0.${i}`))).toHaveLength(3);
  // The dying node's lease is alive: its slots count.
  expect(passed(await claims([b], 2, 'b', () => 'frank', () => '10.1.1.1'))).toHaveLength(0);
  // Cut off from Redis (as a killed node): no release, no renewal.
  dying.connections.command.disconnect();
  expect(await leaseKeys('node-dying')).toHaveLength(1);
  expect(await eventually(async () => (await leaseKeys('node-dying')).length === 0, 30_000, 50)).toBe(true);
  const after = await claims([b], 5, 'c', () => 'frank', () => '10.1.1.1');
  expect(passed(after)).toHaveLength(3);
  expect(await admin.smembers(`${prefix}conns:user:frank`)).toEqual(expect.not.arrayContaining([expect.stringMatching(/^node-dying:/)]));
});

test('a live node whose lease lapsed (Redis lost it) adds its slots again at its next renewal', async () => {
  const a = await node('node-a', 1_500);
  const b = await node('node-b');
  expect(passed(await claims([a], 3, 'a', () => 'gina', () => '10.2.0.1'))).toHaveLength(3);
  await admin.del(...(await leaseKeys('node-a')));
  // b's claim at the cap drops a's members, since a's lease is gone, and takes one slot.
  expect(passed(await claims([b], 1, 'b', () => 'gina', () => '10.2.0.2'))).toHaveLength(1);
  expect(await admin.scard(`${prefix}conns:user:gina`)).toBe(1);
  // a renews, sees its lease had lapsed and counts its 3 sockets again: 4 in all, over the cap until some go.
  expect(await eventually(async () => (await admin.scard(`${prefix}conns:user:gina`)) === 4, 30_000, 50)).toBe(true);
  expect(passed(await claims([b], 1, 'c', () => 'gina', () => '10.2.0.3'))).toHaveLength(0);
});

test('stop() ends the lease at once: what the node still counted is freed by the next claim', async () => {
  const a = await node('node-a');
  const b = await node('node-b');
  expect(passed(await claims([a], 3, 'a', () => 'hank', () => '10.3.0.1'))).toHaveLength(3);
  await stopNode(a);
  nodes.splice(nodes.indexOf(a), 1);
  expect(passed(await claims([b], 4, 'b', () => 'hank', () => '10.3.0.2'))).toHaveLength(3);
});

test("a node restarted under the same NODE_ID does not make the slots of the process before it count again", async () => {
  const dead = await node('node-a', 1_000);
  const b = await node('node-b');
  expect(passed(await claims([dead], 3, 'a', () => 'ivan', () => '10.4.0.1'))).toHaveLength(3);
  // Killed: no release, no renewal; a new process of the same name starts, and renews its own lease.
  dead.connections.command.disconnect();
  const again = await node('node-a', 1_000);
  await new Promise((r) => setTimeout(r, 1_500));
  expect(passed(await claims([b], 2, 'b', () => 'ivan', () => '10.4.0.2'))).toHaveLength(2);
  expect(passed(await claims([again], 2, 'c', () => 'ivan', () => '10.4.0.3'))).toHaveLength(1);
});
