/**
 * Node messages over Redis: to one node, to every other node, never back to the sender; malformed messages
 * are ignored; a send to a node nobody listens for says so.
 */
import type { Redis } from 'ioredis';
import type { NodeMessage } from '../../server/bus/node-messages';
import type { RedisCluster } from '../../server/redis-cluster';
import { adminConnection, dropPrefix, scratchPrefix, startNode, stopNode } from '../helpers/redis-scratch';

let admin: Redis;
let prefix: string;
let nodes: Record<'a' | 'b' | 'c', RedisCluster>;

beforeAll(async () => {
  admin = adminConnection();
  prefix = scratchPrefix();
  nodes = { a: await startNode(prefix, 'node-a'), b: await startNode(prefix, 'node-b'), c: await startNode(prefix, 'node-c') };
});

afterAll(async () => {
  for (const n of Object.values(nodes)) await stopNode(n);
  await dropPrefix(admin, prefix);
  await admin.quit();
});

/** Messages a node gets, as `from type`, and a wait for the n-th. */
function inbox(node: RedisCluster) {
  const got: string[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const off = node.nodeMessages.onMessage((m: NodeMessage, from: string) => {
    got.push(`${from} ${m.type}${m.type === 'cancel_run' ? ` ${m.run_id}` : ''}`);
    for (const w of waiters.filter((x) => got.length >= x.n)) w.resolve();
  });
  return { got, off, count: (n: number) => (got.length >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n, resolve }))) };
}

test('send reaches that node only; broadcast every other node; nobody hears their own', async () => {
  const [a, b, c] = [inbox(nodes.a), inbox(nodes.b), inbox(nodes.c)];
  expect(await nodes.a.nodeMessages.send('node-b', { type: 'cancel_run', run_id: 'r1', user_id: 'u1' })).toBe(true);
  expect(await nodes.a.nodeMessages.broadcast({ type: 'wake' })).toBe(2);
  await nodes.c.nodeMessages.broadcast({ type: 'node_died', node_id: 'node-x' });
  await b.count(3);
  await a.count(1);
  await c.count(1);
  expect(b.got).toEqual(['node-a cancel_run r1', 'node-a wake', 'node-c node_died']);
  expect(a.got).toEqual(['node-c node_died']);
  expect(c.got).toEqual(['node-a wake']);
  // To itself: a direct call.
  expect(await nodes.a.nodeMessages.send('node-a', { type: 'wake' })).toBe(true);
  await a.count(2);
  expect(a.got[1]).toBe('node-a wake');
  for (const x of [a, b, c]) x.off();
});

test('a node nobody listens for: send answers false', async () => {
  expect(await nodes.a.nodeMessages.send('node-gone', { type: 'wake' })).toBe(false);
});

test('malformed or oversized messages are ignored; what follows them arrives', async () => {
  const b = inbox(nodes.b);
  const channel = `${prefix}node:node-b`;
  await admin.publish(channel, 'not json');
  await admin.publish(channel, JSON.stringify({ from: 'node-x', msg: { type: 'format_disk' } }));
  await admin.publish(channel, JSON.stringify({ msg: { type: 'wake' } }));
  await admin.publish(channel, JSON.stringify({ from: 'node-x', msg: { type: 'node_died', node_id: 'y'.repeat(5000) } }));
  await admin.publish(channel, JSON.stringify({ from: 'node-x', msg: { type: 'wake' } }));
  await b.count(1);
  expect(b.got).toEqual(['node-x wake']);
  b.off();
  // A message that does not fit the schema is not sent either.
  await expect(nodes.a.nodeMessages.send('node-b', { type: 'nope' } as unknown as NodeMessage)).rejects.toThrow();
});
