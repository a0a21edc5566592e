/**
 * The in-process shared state on its own: every check-and-change (take, redeem, claim) holds under a burst
 * of concurrent callers (they await, so they interleave), and no timer runs before start() or after stop().
 */
import { EventEmitter } from 'node:events';
import { createConnectionSlots } from '../../server/realtime/connection-slots';
import { createInProcessConnectionCounts } from '../../server/shared/in-process/connection-counts';
import { createInProcessSharedState } from '../../server/shared/in-process/index';
import { createInProcessRateLimiter } from '../../server/shared/in-process/rate-limiter';
import { createInProcessTickets } from '../../server/shared/in-process/tickets';
import { TICKET_TTL_MS } from '../../server/shared/shared-state';

const codes = async (calls: Promise<unknown>[]) => (await Promise.allSettled(calls)).map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as { code?: string }).code));
const count = (xs: unknown[], x: unknown) => xs.filter((y) => y === x).length;

describe('rate limiter', () => {
  test('100 concurrent takes against a burst of 3: exactly 3 pass, the rest RATE_LIMITED with a retry hint', async () => {
    const t = 1000;
    const limiter = createInProcessRateLimiter({ rate: 1, burst: 3 }, () => t);
    const results = await codes(Array.from({ length: 100 }, () => limiter.take('k', 'things')));
    expect(count(results, 'ok')).toBe(3);
    expect(count(results, 'RATE_LIMITED')).toBe(97);
    await expect(limiter.take('k', 'things')).rejects.toMatchObject({ code: 'RATE_LIMITED', retryAfterSeconds: 1, message: expect.stringMatching(/too many things; retry in 1000 ms/) });
  });

  test('check does not spend; the bucket refills at its rate; keys are separate', async () => {
    let t = 0;
    const limiter = createInProcessRateLimiter({ rate: 2, burst: 1 }, () => t);
    await limiter.check('a', 'x');
    await limiter.check('a', 'x');
    await limiter.take('a', 'x');
    await expect(limiter.check('a', 'x')).rejects.toMatchObject({ code: 'RATE_LIMITED' });
    await limiter.take('b', 'x');
    t += 500;
    await limiter.take('a', 'x');
  });
});

test('tickets: one ticket redeemed 20 times at once is valid exactly once; an expired one is refused', async () => {
  let t = 0;
  const tickets = createInProcessTickets(() => t);
  const session = { userId: 'u', expiresAt: null };
  const { ticket, expires_in } = await tickets.issue(session);
  expect(expires_in).toBe(TICKET_TTL_MS / 1000);
  const results = await Promise.allSettled(Array.from({ length: 20 }, () => tickets.redeem(ticket)));
  expect(results.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<unknown>).value)).toEqual([session]);
  const late = await tickets.issue(session);
  t += TICKET_TTL_MS;
  await expect(tickets.redeem(late.ticket)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
  await expect(tickets.redeem(42)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
});

test('connection counts: 50 concurrent claims of one user against a cap of 3 take exactly 3 slots; a release frees one, once', async () => {
  const counts = createInProcessConnectionCounts({ perUser: 3, perIp: 100 });
  const settled = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => counts.claim(`s${i}`, 'u', `ip${i}`)));
  const releases = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  expect(releases).toHaveLength(3);
  expect(settled.filter((r) => r.status === 'rejected').every((r) => (r as PromiseRejectedResult).reason.code === 'RATE_LIMITED')).toBe(true);
  await releases[0]();
  await releases[0]();
  await counts.claim('again', 'u', 'ip');
  await expect(counts.claim('more', 'u', 'ip')).rejects.toMatchObject({ code: 'RATE_LIMITED', message: expect.stringMatching(/MAX_CONNECTIONS_PER_USER=3/) });
  const perIp = createInProcessConnectionCounts({ perUser: 100, perIp: 1 });
  await perIp.claim('a', 'u1', 'ip');
  await expect(perIp.claim('b', 'u2', 'ip')).rejects.toMatchObject({ code: 'RATE_LIMITED', message: expect.stringMatching(/MAX_CONNECTIONS_PER_IP=1/) });
});

describe('connection slots', () => {
  const engine = () => Object.assign(new EventEmitter(), { readyState: 'open' });

  test('150 concurrent claims over one engine.io connection: one slot, the others BAD_REQUEST; closing the connection releases it', async () => {
    const counts = createInProcessConnectionCounts({ perUser: 1, perIp: 100 });
    const slots = createConnectionSlots(counts);
    const conn = engine();
    const results = await codes(Array.from({ length: 150 }, (_, i) => slots.claim(`s${i}`, 'u', 'ip', conn)));
    expect(count(results, 'ok')).toBe(1);
    expect(count(results, 'BAD_REQUEST')).toBe(149);
    conn.readyState = 'closed';
    conn.emit('close');
    expect(conn.listenerCount('close')).toBe(0);
    await slots.claim('next', 'u', 'ip', engine());
  });

  test('a connection that closes while the shared claim is awaited leaves no count behind; a closed one is refused', async () => {
    const counts = createInProcessConnectionCounts({ perUser: 1, perIp: 100 });
    const slots = createConnectionSlots(counts);
    const conn = engine();
    const claim = slots.claim('s1', 'u', 'ip', conn);
    conn.readyState = 'closed';
    conn.emit('close');
    await expect(claim).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    await expect(slots.claim('s2', 'u', 'ip', conn)).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    const release = await slots.claim('s3', 'u', 'ip', engine());
    await expect(slots.claim('s4', 'u', 'ip', engine())).rejects.toMatchObject({ code: 'RATE_LIMITED' });
    release();
    release();
    await slots.claim('s5', 'u', 'ip', engine());
  });
});

test('the shared state starts no timer when created; start() starts the sweeps, stop() ends them', async () => {
  jest.useFakeTimers();
  try {
    const limit = { rate: 1, burst: 1 };
    const shared = createInProcessSharedState({ rateLimits: { user: limit, ip: limit, authFailures: limit }, maxConnectionsPerUser: 1, maxConnectionsPerIp: 1 });
    expect(jest.getTimerCount()).toBe(0);
    await shared.start();
    await shared.start();
    expect(jest.getTimerCount()).toBe(3);
    await shared.stop();
    expect(jest.getTimerCount()).toBe(0);
  } finally {
    jest.useRealTimers();
  }
});
