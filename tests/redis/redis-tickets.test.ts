/**
 * Tickets in Redis: issued on one node, redeemed on another, once; two redeems of one ticket on two nodes at
 * the same time: exactly one succeeds; the key carries the ticket's lifetime, so Redis drops it unused.
 */
import type { Redis } from 'ioredis';
import { CodedError } from '../../protocol/errors';
import { TICKET_TTL_MS } from '../../server/shared/shared-state';
import type { RedisCluster } from '../../server/redis-cluster';
import { adminConnection, dropPrefix, scratchPrefix, startNode, stopNode, TEST_REDIS_URL } from '../helpers/redis-scratch';
import { startTcpProxy } from '../helpers/tcp-proxy';
import { eventually } from '../helpers/client';

let admin: Redis;
let prefix: string;
let a: RedisCluster;
let b: RedisCluster;

beforeAll(async () => {
  admin = adminConnection();
  prefix = scratchPrefix();
  a = await startNode(prefix, 'node-a');
  b = await startNode(prefix, 'node-b');
});

afterAll(async () => {
  await stopNode(a);
  await stopNode(b);
  await dropPrefix(admin, prefix);
  await admin.quit();
});

const codeOf = (p: Promise<unknown>) => p.then(() => 'ok', (err) => (err instanceof CodedError ? err.code : `not coded: ${err}`));
const errorOf = (p: Promise<unknown>) => p.then(() => 'ok', (err) => (err instanceof CodedError ? `${err.code}: ${err.message}` : `not coded: ${err}`));

test('issued on one node, redeemed on the other, once', async () => {
  const session = { userId: 'alice', expiresAt: 1_900_000_000_000 };
  const { ticket, expires_in } = await a.shared.tickets.issue(session);
  expect(expires_in).toBe(TICKET_TTL_MS / 1000);
  const ttl = await admin.pttl(`${prefix}ticket:${ticket}`);
  expect(ttl).toBeGreaterThan(0);
  expect(ttl).toBeLessThanOrEqual(TICKET_TTL_MS);
  expect(await b.shared.tickets.redeem(ticket)).toEqual(session);
  expect(await codeOf(a.shared.tickets.redeem(ticket))).toBe('UNAUTHORIZED');
  expect(await codeOf(b.shared.tickets.redeem(ticket))).toBe('UNAUTHORIZED');
  expect(await admin.exists(`${prefix}ticket:${ticket}`)).toBe(0);
});

test('redeemed on two nodes at once: exactly one succeeds', async () => {
  for (let i = 0; i < 20; i++) {
    const { ticket } = await a.shared.tickets.issue({ userId: `u${i}`, expiresAt: null });
    const codes = await Promise.all([a, b, a, b].map((n) => codeOf(n.shared.tickets.redeem(ticket))));
    expect(codes.sort()).toEqual(['UNAUTHORIZED', 'UNAUTHORIZED', 'UNAUTHORIZED', 'ok']);
  }
});

test('anything but a ticket issue made is UNAUTHORIZED, a lapsed one too', async () => {
  for (const bad of [undefined, null, 42, '', 'x'.repeat(32), 'a'.repeat(1000), { ticket: 'x' }]) {
    expect(await codeOf(b.shared.tickets.redeem(bad))).toBe('UNAUTHORIZED');
  }
  const { ticket } = await a.shared.tickets.issue({ userId: 'bob', expiresAt: null });
  // What Redis does when the PX expiry comes: the key is gone.
  await admin.del(`${prefix}ticket:${ticket}`);
  expect(await codeOf(b.shared.tickets.redeem(ticket))).toBe('UNAUTHORIZED');
});

test('Redis unreachable: issue and redeem are REDIS_UNAVAILABLE; a redeem left unanswered may still run, so it says to fetch a new ticket', async () => {
  const proxy = await startTcpProxy(Number(new URL(TEST_REDIS_URL).port || 6379), new URL(TEST_REDIS_URL).hostname);
  const far = await startNode(prefix, `tickets-far-${process.pid}`, {}, `redis://127.0.0.1:${proxy.port}`);
  try {
    const { ticket } = await a.shared.tickets.issue({ userId: 'carol', expiresAt: null });
    // Not asked: the connection is down (no offline queue).
    proxy.drop();
    expect(await eventually(() => far.connections.command.status !== 'ready')).toBe(true);
    expect(await errorOf(far.shared.tickets.issue({ userId: 'carol', expiresAt: null }))).toMatch(/^REDIS_UNAVAILABLE: .*no connection ticket can be issued/);
    expect(await errorOf(far.shared.tickets.redeem(ticket))).toMatch(/^REDIS_UNAVAILABLE: .*fetch a new ticket/);
    expect(await admin.exists(`${prefix}ticket:${ticket}`)).toBe(1);
    // Asked, no answer in time: the GETDEL waits in the network and reaches Redis once it flows again.
    proxy.restore();
    expect(await eventually(() => far.connections.command.status === 'ready')).toBe(true);
    proxy.freeze();
    expect(await errorOf(far.shared.tickets.redeem(ticket))).toMatch(/^REDIS_UNAVAILABLE: .*may be used up; fetch a new ticket/);
    proxy.restore();
    expect(await eventually(async () => (await admin.exists(`${prefix}ticket:${ticket}`)) === 0)).toBe(true);
    expect(await codeOf(b.shared.tickets.redeem(ticket))).toBe('UNAUTHORIZED');
  } finally {
    proxy.restore();
    await stopNode(far);
    await proxy.close();
  }
}, 30_000);
