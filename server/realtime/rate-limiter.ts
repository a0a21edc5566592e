/**
 * Token buckets keyed by user or IP: `rate` requests per second with bursts up to `burst`. Over the limit
 * a request gets RATE_LIMITED with the time until a token is back; the bucket refills on its own.
 */
import { CodedError } from '../../protocol/errors.js';

export interface RateLimit {
  rate: number;
  burst: number;
}

export function createRateLimiter(limit: RateLimit, now: () => number = Date.now) {
  const buckets = new Map<string, { tokens: number; at: number }>();
  // Full buckets carry no information: forget them so the map stays small.
  const sweep = setInterval(() => {
    const t = now();
    for (const [k, b] of buckets) if (b.tokens + ((t - b.at) / 1000) * limit.rate >= limit.burst) buckets.delete(k);
  }, 10_000);
  sweep.unref();
  const refill = (key: string) => {
    const t = now();
    const b = buckets.get(key) ?? { tokens: limit.burst, at: t };
    b.tokens = Math.min(limit.burst, b.tokens + ((t - b.at) / 1000) * limit.rate);
    b.at = t;
    buckets.set(key, b);
    return b;
  };
  const refuseIfEmpty = (b: { tokens: number }, what: string) => {
    if (b.tokens >= 1) return;
    const retryMs = Math.ceil(((1 - b.tokens) / limit.rate) * 1000);
    throw new CodedError('RATE_LIMITED', `too many ${what}; retry in ${retryMs} ms`, { retryAfterSeconds: Math.max(1, Math.ceil(retryMs / 1000)) });
  };
  return {
    /** Takes one token for `key` or throws RATE_LIMITED saying when to retry. */
    take(key: string, what: string): void {
      const b = refill(key);
      refuseIfEmpty(b, what);
      b.tokens -= 1;
    },
    /** Throws RATE_LIMITED like take when no token is left, without spending one. */
    check(key: string, what: string): void {
      refuseIfEmpty(refill(key), what);
    },
    /** Spends one token if there is one, never throws (for costs counted after the fact, like a failure). */
    spend(key: string): void {
      const b = refill(key);
      b.tokens = Math.max(0, b.tokens - 1);
    },
    stop: () => clearInterval(sweep),
  };
}

export type RateLimiter = ReturnType<typeof createRateLimiter>;
