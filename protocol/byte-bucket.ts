/**
 * A budget of bytes: `capacity` may go at once, then it refills at `bytesPerSecond`. Written by hand because it
 * meters bytes, synchronously, on a stream's every chunk (a worker's output, a run's log lines); rate-limiter-flexible
 * meters requests, through promises.
 */
export interface ByteBucket {
  /** Spends `bytes` if they fit now (true); otherwise spends nothing (false). */
  take(bytes: number): boolean;
}

export function createByteBucket(bytesPerSecond: number, capacity: number, now: () => number = Date.now): ByteBucket {
  let tokens = capacity;
  let at = now();
  return {
    take(bytes) {
      const t = now();
      tokens = Math.min(capacity, tokens + ((t - at) / 1000) * bytesPerSecond);
      at = t;
      if (bytes > tokens) return false;
      tokens -= bytes;
      return true;
    },
  };
}
