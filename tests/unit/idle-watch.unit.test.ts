/**
 * The idle watch (workers/cell/idle-watch.ts) ends a warm worker whose event loop stays busy while it holds no run,
 * and only such a one: a worker that ran runs between two of its checks was busy with them, not with code a run left.
 */
import { createIdleWatch, type EventLoopUtilization, type WatchedWorker } from '../../workers/cell/idle-watch';

/** A worker whose loop figures the test advances: `active` and `idle` ms since it started. */
function fakeWorker(threadId: number) {
  const total = { active: 0, idle: 0 };
  const worker: WatchedWorker = {
    threadId,
    performance: {
      eventLoopUtilization(a?: EventLoopUtilization, b?: EventLoopUtilization): EventLoopUtilization {
        if (!a) return { active: total.active, idle: total.idle, utilization: total.active / (total.active + total.idle || 1) };
        const active = a.active - (b?.active ?? 0);
        const idle = a.idle - (b?.idle ?? 0);
        return { active, idle, utilization: active / (active + idle || 1) };
      },
    },
  };
  return { worker, total };
}

test('a worker that keeps its loop busy with no run is ended after busyForMs', () => {
  let t = 0;
  const { worker, total } = fakeWorker(1);
  const ended: number[] = [];
  const watch = createIdleWatch({ workers: () => [worker], running: () => new Set(), warm: () => true, onBusyIdle: (w) => ended.push(w.threadId), now: () => t });
  for (let i = 0; i < 8; i++) {
    watch.check();
    t += 500;
    total.active += 500;
  }
  expect(ended).toEqual([1]);
});

test('a worker serving short runs back to back, between runs at each check, is not ended', () => {
  let t = 0;
  const { worker, total } = fakeWorker(1);
  const ended: number[] = [];
  // Each 500 ms between checks the worker runs (and ends) runs for 300 ms: it is never seen holding one.
  let lastRunEnded: number | undefined;
  const options = {
    workers: () => [worker],
    running: () => new Set<number>(),
    /** When the worker last ended a run (the cell's dispatcher knows). */
    lastRunEnded: () => lastRunEnded,
    warm: () => true,
    onBusyIdle: (w: WatchedWorker) => ended.push(w.threadId),
    now: () => t,
  };
  const watch = createIdleWatch(options);
  for (let i = 0; i < 20; i++) {
    watch.check();
    t += 500;
    total.active += 300;
    total.idle += 200;
    lastRunEnded = t - 50;
  }
  expect(ended).toEqual([]);
});
