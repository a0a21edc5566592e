/**
 * The in-process rate limiter's arithmetic and sweep, and the tickets' lifetime, one rule per test: what the
 * burst tests in shared-state.unit.test.ts leave unpinned (found by `npm run mutate`).
 */
import { createInProcessRateLimiter } from '../../server/shared/in-process/rate-limiter';
import { createInProcessTickets } from '../../server/shared/in-process/tickets';
import { TICKET_TTL_MS } from '../../server/shared/shared-state';

const session = { userId: 'alice', expiresAt: null };

describe('rate limiter', () => {
  test('a token comes back after exactly 1/rate seconds, not before', async () => {
    let t = 0;
    const limiter = createInProcessRateLimiter({ rate: 2, burst: 1 }, () => t);
    await limiter.take('k', 'x');
    t = 499;
    await expect(limiter.take('k', 'x')).rejects.toMatchObject({ code: 'RATE_LIMITED' });
    t = 500;
    await expect(limiter.take('k', 'x')).resolves.toBeUndefined();
  });

  test('the retry hint is the time until the next token, in ms and in whole seconds (at least 1)', async () => {
    const t = 0;
    const slow = createInProcessRateLimiter({ rate: 0.25, burst: 1 }, () => t);
    await slow.take('k', 'x');
    await expect(slow.take('k', 'x')).rejects.toMatchObject({ message: 'too many x; retry in 4000 ms', retryAfterSeconds: 4 });
    const fast = createInProcessRateLimiter({ rate: 4, burst: 1 }, () => t);
    await fast.take('k', 'x');
    await expect(fast.take('k', 'x')).rejects.toMatchObject({ message: 'too many x; retry in 250 ms', retryAfterSeconds: 1 });
  });

  test('a partly refilled bucket says how long the rest takes', async () => {
    let t = 0;
    const limiter = createInProcessRateLimiter({ rate: 1, burst: 1 }, () => t);
    await limiter.take('k', 'x');
    t = 300;
    await expect(limiter.check('k', 'x')).rejects.toMatchObject({ message: 'too many x; retry in 700 ms' });
  });

  describe('the sweep', () => {
    beforeEach(() => jest.useFakeTimers());
    afterEach(() => jest.useRealTimers());

    test('runs only between start() and stop(), once however often start() is called', () => {
      const limiter = createInProcessRateLimiter({ rate: 1, burst: 1 });
      expect(jest.getTimerCount()).toBe(0);
      limiter.start();
      limiter.start();
      expect(jest.getTimerCount()).toBe(1);
      limiter.stop();
      expect(jest.getTimerCount()).toBe(0);
    });

    test('forgets full buckets only: a bucket still refilling keeps its debt', async () => {
      let t = 0;
      // One token per 100 s: ten seconds after the take, the bucket is a tenth full.
      const limiter = createInProcessRateLimiter({ rate: 0.01, burst: 1 }, () => t);
      limiter.start();
      await limiter.take('k', 'x');
      t = 10_000;
      jest.advanceTimersByTime(10_000);
      await expect(limiter.take('k', 'x')).rejects.toMatchObject({ code: 'RATE_LIMITED' });
      limiter.stop();
    });
  });
});

describe('tickets', () => {
  test('a ticket redeems once, for its session; a second use, another value or a non-string is refused', async () => {
    let t = 0;
    const tickets = createInProcessTickets(() => t);
    const a = await tickets.issue(session);
    const b = await tickets.issue({ userId: 'bob', expiresAt: null });
    expect(a.expires_in).toBe(TICKET_TTL_MS / 1000);
    // Issuing b swept nothing that was still valid.
    await expect(tickets.redeem(a.ticket)).resolves.toEqual(session);
    await expect(tickets.redeem(a.ticket)).rejects.toMatchObject({ code: 'UNAUTHORIZED', message: 'invalid, used or expired ticket' });
    await expect(tickets.redeem('nope')).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    await expect(tickets.redeem(42)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    t = TICKET_TTL_MS - 1;
    await expect(tickets.redeem(b.ticket)).resolves.toMatchObject({ userId: 'bob' });
  });

  test('a ticket expires at exactly its lifetime', async () => {
    let t = 0;
    const tickets = createInProcessTickets(() => t);
    const a = await tickets.issue(session);
    t = TICKET_TTL_MS;
    await expect(tickets.redeem(a.ticket)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
  });

  test('issuing sweeps expired tickets and keeps the others', async () => {
    let t = 0;
    const tickets = createInProcessTickets(() => t);
    const old = await tickets.issue(session);
    t = TICKET_TTL_MS - 1;
    const young = await tickets.issue(session);
    t = TICKET_TTL_MS;
    await tickets.issue(session);
    await expect(tickets.redeem(old.ticket)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    await expect(tickets.redeem(young.ticket)).resolves.toEqual(session);
  });
});
