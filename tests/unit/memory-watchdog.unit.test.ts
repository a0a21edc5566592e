/**
 * The cell's memory watchdog (workers/cell/memory-watchdog.ts) reads the cell's RSS every 25 ms while runs are
 * in the cell and for a second after, every 250 ms at rest, and at once when a first run arrives; over the limit
 * it reports once and stops, whatever the pace.
 */
import { BUSY_INTERVAL_MS, BUSY_TAIL_MS, createMemoryWatchdog, REST_INTERVAL_MS } from '../../workers/cell/memory-watchdog';

const LIMIT = 1000;

function rig() {
  let rss = 100;
  let warming = false;
  const reads: number[] = [];
  const exceeded: Array<[number, number]> = [];
  const watchdog = createMemoryWatchdog({
    limitBytes: LIMIT,
    rssBytes: () => {
      reads.push(Date.now());
      return rss;
    },
    onExceeded: (r, l) => exceeded.push([r, l]),
    warming: () => warming,
    now: () => Date.now(),
  });
  return { watchdog, reads, exceeded, grow: (to: number) => (rss = to), warm: (on: boolean) => (warming = on) };
}

/** Reads within [from, from + ms). */
const readsIn = (reads: number[], from: number, ms: number) => reads.filter((t) => t >= from && t < from + ms).length;

beforeEach(() => jest.useFakeTimers({ now: 1_000_000 }));
afterEach(() => jest.useRealTimers());

test('at rest it reads every 250 ms, not every 25', () => {
  const { watchdog, reads } = rig();
  watchdog.start();
  const t0 = Date.now();
  jest.advanceTimersByTime(2000);
  expect(readsIn(reads, t0, 2000)).toBe(2000 / REST_INTERVAL_MS - 1);
  watchdog.stop();
});

test('a first run is checked at once, then at the busy pace until a second after the last run ends', () => {
  const { watchdog, reads } = rig();
  watchdog.start();
  jest.advanceTimersByTime(100);
  const arrived = Date.now();
  watchdog.runsInCell(1);
  expect(reads).toEqual([arrived]);
  jest.advanceTimersByTime(500);
  expect(readsIn(reads, arrived, 500)).toBe(500 / BUSY_INTERVAL_MS);
  watchdog.runsInCell(2);
  watchdog.runsInCell(0);
  const ended = Date.now();
  // A second run arriving while busy adds no read of its own.
  expect(readsIn(reads, ended, 1)).toBe(1);
  jest.advanceTimersByTime(BUSY_TAIL_MS);
  expect(readsIn(reads, ended, BUSY_TAIL_MS)).toBeGreaterThanOrEqual(BUSY_TAIL_MS / BUSY_INTERVAL_MS - 1);
  const resting = Date.now() + REST_INTERVAL_MS;
  jest.advanceTimersByTime(REST_INTERVAL_MS + 1000);
  expect(readsIn(reads, resting, 1000)).toBe(1000 / REST_INTERVAL_MS);
  watchdog.stop();
});

test('over the limit at rest: reported once within the rest interval, then no more reads', () => {
  const { watchdog, reads, exceeded, grow } = rig();
  watchdog.start();
  jest.advanceTimersByTime(10);
  grow(LIMIT + 1);
  jest.advanceTimersByTime(REST_INTERVAL_MS);
  expect(exceeded).toEqual([[LIMIT + 1, LIMIT]]);
  const n = reads.length;
  watchdog.runsInCell(1);
  jest.advanceTimersByTime(5000);
  expect(reads.length).toBe(n);
  expect(exceeded).toHaveLength(1);
});

test('over the limit while busy: reported within the busy interval', () => {
  const { watchdog, exceeded, grow } = rig();
  watchdog.start();
  watchdog.runsInCell(1);
  grow(LIMIT + 1);
  jest.advanceTimersByTime(BUSY_INTERVAL_MS);
  expect(exceeded).toHaveLength(1);
});

test('a worker warming up (agent modules load then) keeps the busy pace; one about to start is checked at once', () => {
  const { watchdog, reads, warm } = rig();
  watchdog.start();
  jest.advanceTimersByTime(1010);
  const starting = Date.now();
  watchdog.workerStarting();
  expect(readsIn(reads, starting, 1)).toBe(1);
  warm(true);
  jest.advanceTimersByTime(2000);
  expect(readsIn(reads, starting + 1, 2000)).toBe(2000 / BUSY_INTERVAL_MS);
  warm(false);
  jest.advanceTimersByTime(BUSY_TAIL_MS + REST_INTERVAL_MS);
  const resting = Date.now();
  jest.advanceTimersByTime(1000);
  expect(readsIn(reads, resting, 1000)).toBe(1000 / REST_INTERVAL_MS);
  watchdog.stop();
});
