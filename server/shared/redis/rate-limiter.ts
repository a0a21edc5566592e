/**
 * Rate limits shared by every node, with rate-limiter-flexible's RateLimiterRedis: one Lua script per take
 * (SET NX with expiry, INCRBY, PTTL), so takes on any nodes that arrive together are counted one by one and a
 * burst cannot pass one check together. A well-kept library (atomic, tested against ioredis) rather than a
 * script of our own.
 *
 * The library counts points in fixed windows; it has no token bucket. The bucket's `rate` per second and
 * `burst` map to `points: burst` per window of `duration: ceil(burst / rate)` seconds (at least 1: the library
 * keeps whole seconds), so:
 * - a key that was quiet gets exactly `burst` at once, as from a full bucket (tests/limits-burst.test.ts
 *   pins those counts; the defaults are 40 per 2 s per user, 100 per 2 s per address, 10 per 20 s of failed
 *   handshakes);
 * - the sustained rate is `burst / duration` ≤ `rate` (equal when `burst / rate` is a whole number of seconds,
 *   as with the defaults; lower when `burst < rate`, since the window cannot be shorter than 1 s);
 * - unlike the bucket, a key may spend its `burst` at the end of one window and again at the start of the
 *   next: up to 2 × burst within a short time, once per window;
 * - a refused request waits for the window's end (up to `duration`), not for one token (1 / rate).
 *
 * While Redis cannot be reached, each node counts on its own (the library's insurance limiter, in memory,
 * with the same window): a limit per node rather than none, or a refusal of everything.
 */
import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { CodedError } from '../../../protocol/errors.js';
import type { Config } from '../../config.js';
import type { RateLimiter } from '../shared-state.js';

/** A token bucket: `rate` per second, bursts up to `burst` (RATE_LIMIT_*). */
type RateLimit = Config['rateLimits']['user'];

/** The fixed window the library counts in for a token bucket of `limit` (see above). */
export function windowOf(limit: RateLimit): { points: number; duration: number } {
  // The epsilon keeps float dust (3 / (1 / 60) = 180.00000000000003) from adding a second.
  return { points: limit.burst, duration: Math.max(1, Math.ceil(limit.burst / limit.rate - 1e-9)) };
}

/** A limiter whose keys are `<keyPrefix>:<key>` in Redis. */
export function createRedisRateLimiter(redis: Redis, limit: RateLimit, keyPrefix: string): RateLimiter {
  const window = windowOf(limit);
  const limiter = new RateLimiterRedis({
    storeClient: redis,
    keyPrefix,
    ...window,
    // Not ready (reconnecting): straight to the insurance limiter rather than a doomed command.
    rejectIfRedisNotReady: true,
    insuranceLimiter: new RateLimiterMemory({ keyPrefix, ...window }),
  });
  const refused = (msBeforeNext: number, what: string) => {
    const retryMs = Math.max(1, Math.ceil(msBeforeNext));
    return new CodedError('RATE_LIMITED', `too many ${what}; retry in ${retryMs} ms`, { retryAfterSeconds: Math.max(1, Math.ceil(retryMs / 1000)) });
  };
  return {
    async take(key, what) {
      try {
        await limiter.consume(key);
      } catch (err) {
        if (err instanceof RateLimiterRes) throw refused(err.msBeforeNext, what);
        throw err;
      }
    },
    async check(key, what) {
      const res = await limiter.get(key);
      if (res && res.consumedPoints >= window.points) throw refused(res.msBeforeNext, what);
    },
  };
}
