/** A socket's flood guard (server/realtime/flood-guard.ts): refusals per window, messages waiting for admission. */
import { createFloodGuard } from '../../server/realtime/flood-guard';

describe('flood guard', () => {
  test('refusals: up to maxRefusals within the window pass, the next does not; a new window starts over', () => {
    let now = 1_000;
    const guard = createFloodGuard({ maxRefusals: 3, windowMs: 10_000, maxWaiting: 10 }, () => now);
    expect([guard.refused(), guard.refused(), guard.refused()]).toEqual([true, true, true]);
    now += 9_999;
    expect(guard.refused()).toBe(false);
    now += 1;
    expect(guard.refused()).toBe(true);
  });

  test('waiting: at most maxWaiting at once; a settled one frees its place', () => {
    const guard = createFloodGuard({ maxRefusals: 3, windowMs: 10_000, maxWaiting: 2 });
    expect([guard.arrive(), guard.arrive(), guard.arrive()]).toEqual([true, true, false]);
    guard.settle();
    expect(guard.arrive()).toBe(true);
  });
});
