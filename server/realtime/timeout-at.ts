/**
 * A timer for a moment however far away. Node fires a setTimeout delay over 2^31-1 ms (~24.8 days) after 1 ms
 * instead (TimeoutOverflowWarning), and a token may live up to a year (AUTH_MAX_TOKEN_LIFETIME_S): its socket's
 * expiry would fire at once. So a long wait is armed in steps of at most MAX_TIMER_MS, re-armed until `at`.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** The clock and timers timeoutAt uses (Node's by default; a test passes its own). */
export interface TimerClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Calls `fn` at epoch ms `at` (at once, on a timer, if that has passed). Returns the cancel. */
export function timeoutAt(at: number, fn: () => void, clock: TimerClock = nodeClock()): () => void {
  let handle: unknown;
  const arm = (): void => {
    const left = Math.max(0, at - clock.now());
    handle = left > MAX_TIMER_MS ? clock.setTimeout(arm, MAX_TIMER_MS) : clock.setTimeout(fn, left);
  };
  arm();
  return () => clock.clearTimeout(handle);
}

function nodeClock(): TimerClock {
  return { now: Date.now, setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout) };
}
