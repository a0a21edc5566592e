/** timeoutAt (server/realtime/timeout-at.ts) on a fake clock: a wait longer than a Node timer can hold is re-armed in steps. */
import { MAX_TIMER_MS, timeoutAt, type TimerClock } from '../../server/realtime/timeout-at';

/** A clock whose timers fire only when the test advances it; it records every delay asked for. */
function fakeClock() {
  let now = 0;
  let next = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  const delays: number[] = [];
  const clock: TimerClock = {
    now: () => now,
    setTimeout(fn, ms) {
      delays.push(ms);
      timers.set(++next, { at: now + ms, fn });
      return next;
    },
    clearTimeout: (handle) => void timers.delete(handle as number),
  };
  /** Moves time on to `to`, firing the timers due on the way, in order. */
  const advanceTo = (to: number) => {
    for (;;) {
      const due = [...timers.entries()].filter(([, t]) => t.at <= to).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      timers.delete(due[0]);
      now = due[1].at;
      due[1].fn();
    }
    now = to;
  };
  return { clock, delays, advanceTo, pending: () => timers.size };
}

describe('timeoutAt', () => {
  const DAY = 86_400_000;

  test('60 days away: never asks for a delay over MAX_TIMER_MS, fires at the moment, not before', () => {
    const { clock, delays, advanceTo } = fakeClock();
    let fired = 0;
    timeoutAt(60 * DAY, () => fired++, clock);
    advanceTo(60 * DAY - 1);
    expect(fired).toBe(0);
    advanceTo(60 * DAY);
    expect(fired).toBe(1);
    expect(delays.every((d) => d >= 0 && d <= MAX_TIMER_MS)).toBe(true);
    expect(delays.length).toBe(3); // 2^31-1 twice, then the rest
  });

  test('a near or past moment is one timer of the time left (0 when past)', () => {
    const { clock, delays, advanceTo } = fakeClock();
    let fired = 0;
    timeoutAt(5_000, () => fired++, clock);
    timeoutAt(-5_000, () => fired++, clock);
    expect(delays).toEqual([5_000, 0]);
    advanceTo(5_000);
    expect(fired).toBe(2);
  });

  test('cancelled, including after a re-arm: never fires', () => {
    const { clock, advanceTo, pending } = fakeClock();
    let fired = 0;
    const cancel = timeoutAt(40 * DAY, () => fired++, clock);
    advanceTo(MAX_TIMER_MS + 1); // re-armed once
    cancel();
    advanceTo(41 * DAY);
    expect(fired).toBe(0);
    expect(pending()).toBe(0);
  });
});
