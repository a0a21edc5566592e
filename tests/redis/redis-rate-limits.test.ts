/**
 * Rate limits in Redis (rate-limiter-flexible): a concurrent burst split over two nodes passes exactly `burst`
 * times; the refusals are RATE_LIMITED with a retry hint, and check() refuses without spending; the mapping of
 * a token bucket to the library's window; with Redis unreachable each node still limits on its own.
 */
import type { Redis } from 'ioredis';
import { CodedError } from '../../protocol/errors';
import { createLogger } from '../../server/logger';
import { createRedisConnections } from '../../server/bus/redis/connections';
import { createRedisRateLimiter, windowOf } from '../../server/shared/redis/rate-limiter';
import type { RedisCluster } from '../../server/redis-cluster';
import { adminConnection, dropPrefix, scratchPrefix, startNode, stopNode, TEST_REDIS_URL } from '../helpers/redis-scratch';

let admin: Redis;
let prefix: string;
let a: RedisCluster;
let b: RedisCluster;

beforeAll(async () => {
  admin = adminConnection();
  prefix = scratchPrefix();
  // A window far longer than the test: a burst cannot straddle two windows.
  const limits = { user: { rate: 1, burst: 40 }, ip: { rate: 50, burst: 100 }, authFailures: { rate: 1 / 60, burst: 3 } };
  a = await startNode(prefix, 'node-a', { rateLimits: limits });
  b = await startNode(prefix, 'node-b', { rateLimits: limits });
});

afterAll(async () => {
  await stopNode(a);
  await stopNode(b);
  await dropPrefix(admin, prefix);
  await admin.quit();
});

/** Outcomes of `n` concurrent takes alternating between the two nodes. */
async function burst(n: number, take: (node: RedisCluster) => Promise<void>) {
  const results = await Promise.all(Array.from({ length: n }, (_, i) => take(i % 2 ? b : a).then(() => null, (err: unknown) => err)));
  const refused = results.filter((r): r is CodedError => r instanceof CodedError);
  return { passed: results.filter((r) => r === null).length, refused, other: results.filter((r) => r !== null && !(r instanceof CodedError)) };
}

test('150 failed handshakes at once over two nodes: exactly 3 pass, 147 are RATE_LIMITED with a retry hint', async () => {
  const { passed, refused, other } = await burst(150, (n) => n.shared.limits.authFailures.take('ip:203.0.113.7', 'failed handshakes from this address'));
  expect(other).toEqual([]);
  expect(passed).toBe(3);
  expect(refused).toHaveLength(147);
  for (const err of refused) {
    expect(err.code).toBe('RATE_LIMITED');
    expect(err.message).toMatch(/^too many failed handshakes from this address; retry in \d+ ms$/);
    expect(err.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(err.retryAfterSeconds).toBeLessThanOrEqual(180);
  }
  // check() refuses too, on either node, and another key is untouched.
  await expect(b.shared.limits.authFailures.check('ip:203.0.113.7', 'failed handshakes')).rejects.toMatchObject({ code: 'RATE_LIMITED' });
  await expect(a.shared.limits.authFailures.check('ip:203.0.113.8', 'failed handshakes')).resolves.toBeUndefined();
});

test('a burst of 200 messages over two nodes passes exactly `burst` (40); check() spends nothing', async () => {
  for (let i = 0; i < 10; i++) await a.shared.limits.user.check('user:carol', 'messages');
  const { passed, refused, other } = await burst(200, (n) => n.shared.limits.user.take('user:carol', 'messages for this user'));
  expect(other).toEqual([]);
  expect(passed).toBe(40);
  expect(refused.every((e) => e.code === 'RATE_LIMITED')).toBe(true);
});

test('the token bucket maps to the library\'s fixed window: points = burst, duration = burst / rate in whole seconds', () => {
  expect(windowOf({ rate: 20, burst: 40 })).toEqual({ points: 40, duration: 2 });
  expect(windowOf({ rate: 50, burst: 100 })).toEqual({ points: 100, duration: 2 });
  expect(windowOf({ rate: 30 / 60, burst: 10 })).toEqual({ points: 10, duration: 20 });
  expect(windowOf({ rate: 1 / 60, burst: 3 })).toEqual({ points: 3, duration: 180 });
  expect(windowOf({ rate: 3, burst: 4 })).toEqual({ points: 4, duration: 2 });
  expect(windowOf({ rate: 50, burst: 10 })).toEqual({ points: 10, duration: 1 });
});

test('Redis unreachable: each node limits on its own (the insurance limiter), still exactly `burst`', async () => {
  const connections = createRedisConnections({ url: TEST_REDIS_URL, nodeId: 'node-cut', startupWaitMs: 10_000, log: createLogger('silent') });
  await connections.connect();
  const limiter = createRedisRateLimiter(connections.command, { rate: 1, burst: 5 }, `${prefix}rl:cut`);
  await connections.close();
  const results = await Promise.all(Array.from({ length: 20 }, () => limiter.take('k', 'things').then(() => 'ok', (err) => err.code)));
  expect(results.filter((r) => r === 'ok')).toHaveLength(5);
  expect(results.filter((r) => r === 'RATE_LIMITED')).toHaveLength(15);
});
