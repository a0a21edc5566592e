/**
 * What one socket may send past its rate limits before it is cut off. A refused message still costs the front
 * its parse, its limiter takes and a reply; a client that keeps sending after RATE_LIMITED answers (each with
 * retry_after_ms) is not waiting for anything, and one such socket could keep the front's event loop busy for
 * every other user. So past `maxRefusals` RATE_LIMITED refusals within `windowMs` the socket is disconnected.
 * Messages waiting for admission are capped as well: one TCP read of tiny messages queues thousands before the
 * first is admitted, and a client that waits for its acks never has that many on their way.
 */
export interface FloodLimits {
  maxRefusals: number;
  windowMs: number;
  maxWaiting: number;
}

/** What socket-server.ts uses: a client that honours retry_after_ms, even sending its retries together, stays far below. */
export const SOCKET_FLOOD_LIMITS: Readonly<FloodLimits> = Object.freeze({ maxRefusals: 200, windowMs: 10_000, maxWaiting: 1000 });

/** One socket's guard. `now` is injectable for tests. */
export function createFloodGuard(limits: FloodLimits, now: () => number = Date.now) {
  let waiting = 0;
  let refusals = 0;
  let windowStart = -Infinity;
  return {
    /** A message arrived: false when `maxWaiting` already wait for admission (the socket is to be cut off). */
    arrive(): boolean {
      if (waiting >= limits.maxWaiting) return false;
      waiting++;
      return true;
    },
    /** A message's admission is over, admitted or refused. */
    settle(): void {
      waiting = Math.max(0, waiting - 1);
    },
    /** A message was refused RATE_LIMITED: false when that is one refusal too many (the socket is to be cut off). */
    refused(): boolean {
      const t = now();
      if (t - windowStart >= limits.windowMs) {
        windowStart = t;
        refusals = 0;
      }
      refusals++;
      return refusals <= limits.maxRefusals;
    },
  };
}

export type FloodGuard = ReturnType<typeof createFloodGuard>;
