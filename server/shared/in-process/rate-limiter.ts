/**
 * Token buckets in memory, keyed by user or IP: `rate` requests per second with bursts up to `burst`. Over
 * the limit a request gets RATE_LIMITED with the time until a token is back; the bucket refills on its own.
 * Each call checks and changes its bucket with no await in between, so concurrent takes cannot all pass.
 */
import { CodedError } from '../../../protocol/errors.js';
import type { RateLimiter } from '../shared-state.js';

export interface RateLimit {
  rate: number;
  burst: number;
}

/** Full buckets carry no information: swept this often so the map stays small. */
const SWEEP_MS = 10_000;

export function createInProcessRateLimiter(limit: RateLimit, now: () => number = Date.now): RateLimiter & { start(): void; stop(): void } {
  const buckets = new Map<string, { tokens: number; at: number }>();
  let sweep: NodeJS.Timeout | null = null;
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
    async take(key, what) {
      const b = refill(key);
      refuseIfEmpty(b, what);
      b.tokens -= 1;
    },
    async check(key, what) {
      refuseIfEmpty(refill(key), what);
    },
    start() {
      if (sweep) return;
      sweep = setInterval(() => {
        const t = now();
        for (const [k, b] of buckets) if (b.tokens + ((t - b.at) / 1000) * limit.rate >= limit.burst) buckets.delete(k);
      }, SWEEP_MS);
      sweep.unref();
    },
    stop() {
      if (sweep) clearInterval(sweep);
      sweep = null;
    },
  };
}
