/**
 * Tickets in Redis: issued on one node, redeemed on another, once; two redeems of one ticket on two nodes at
 * the same time: exactly one succeeds; the key carries the ticket's lifetime, so Redis drops it unused.
 */
import type { Redis } from 'ioredis';
import { CodedError } from '../../protocol/errors';
import { TICKET_TTL_MS } from '../../server/shared/shared-state';
import type { RedisCluster } from '../../server/redis-cluster';
import { adminConnection, dropPrefix, scratchPrefix, startNode, stopNode } from '../helpers/redis-scratch';

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
