/**
 * The front's CPU governor, against a fake clock and fake per-OS-thread CPU times: which OS threads of which
 * cells get demoted, and when. Plus one real reading of a live process's OS threads.
 */
import { Worker } from 'node:worker_threads';
import { createCpuGovernor, DEMOTED_NICE, readCellOsThreads, WARM_UP_GRACE_MS, type OsThreadSample } from '../server/cells/cpu-governor';

function rig(demoteAfterMs: number) {
  let t = 0;
  const osThreads = new Map<number, OsThreadSample>();
  const demoted: number[] = [];
  let reads = 0;
  const runStarts: (number | null)[] = [];
  const g = createCpuGovernor({
    settings: { cpuDemoteAfterMs: demoteAfterMs },
    sampleMs: 3_600_000, // sampled by hand below
    now: () => t,
    readOsThreads: () => {
      reads++;
      return new Map([...osThreads].map(([tid, s]) => [tid, { ...s }]));
    },
    cells: () => [{ id: 'cell1', pid: 1, runStarts, systemOsThreads: new Set([99]), demote: (tid) => {
      demoted.push(tid);
      osThreads.get(tid)!.nice = DEMOTED_NICE;
    } }],
  });
  /** OS threads started at a known time (the others started long ago). */
  const born = new Map<number, number>();
  // Advance the clock by `ms`, charging each OS thread its share of it, then sample.
  const advance = (ms: number, shares: Record<number, number>) => {
    t += ms;
    for (const [tid, share] of Object.entries(shares)) {
      const s = osThreads.get(Number(tid)) ?? { cpuMs: 0, nice: 0 };
      const at = born.get(Number(tid));
      osThreads.set(Number(tid), { ...s, cpuMs: s.cpuMs + ms * share, ...(at === undefined ? {} : { ageMs: t - at }) });
    }
    g.sample();
  };
  return { g, osThreads, demoted, runStarts, advance, born, reads: () => reads, now: () => t };
}

const linux = process.platform === 'linux' ? test : test.skip;

linux('a thread that keeps a core busy past the grace is demoted once; one waiting on I/O never is', () => {
  const r = rig(500);
  r.runStarts.push(0, 0);
  r.advance(600, { 11: 0, 22: 0 }); // runs are old enough; the first sample takes the starting point
  r.advance(250, { 11: 1, 22: 0.02 });
  expect(r.demoted).toEqual([]); // hungry, but for 250 ms only
  r.advance(249, { 11: 1, 22: 0.02 });
  expect(r.demoted).toEqual([]);
  r.advance(1, { 11: 1, 22: 0.02 });
  expect(r.demoted).toEqual([11]); // hungry in every sample for 500 ms
  r.advance(5000, { 11: 1, 22: 0.05 });
  expect(r.demoted).toEqual([11]); // once: its nice value says it is demoted already
  r.g.stop();
});

linux("the cell's own threads (V8's platform, libuv) are never demoted, however busy", () => {
  const r = rig(500);
  r.runStarts.push(0);
  r.advance(600, { 99: 0, 11: 0 });
  for (let i = 0; i < 8; i++) r.advance(250, { 99: 1, 11: 1 });
  expect(r.demoted).toEqual([11]);
  r.g.stop();
});

// A worker warming up (its modules, lockdown; seconds on a busy machine) is as hungry as a busy run. Lowered, it could
// not take its priority back without CAP_SYS_NICE and refused its run, as did each fresh worker after it (helper-81);
// deferring to the cell while any worker warmed let a hungry run escape while workers kept warming (helper-84).
linux("an OS thread's first WARM_UP_GRACE_MS are not held against it: a warming worker is not lowered, a run on it is, later", () => {
  const r = rig(500);
  r.runStarts.push(0);
  r.advance(600, { 11: 0 });
  r.born.set(55, r.now()); // a worker starts warming, hungry for 2.5 s, then idle
  for (let i = 0; i < 10; i++) r.advance(250, { 55: 1 });
  for (let i = 0; i < 8; i++) r.advance(250, { 55: 0.01 });
  expect(r.demoted).toEqual([]);
  // A run on it that keeps a core busy is lowered once the thread is past the grace and hungry for CPU_DEMOTE_AFTER_MS.
  for (let i = 0; i < 4; i++) r.advance(250, { 55: 1 });
  expect(r.demoted).toEqual([55]);
  r.g.stop();
});

linux('a young thread hungry from its start is lowered only once past the grace', () => {
  const r = rig(500);
  r.runStarts.push(0);
  r.advance(600, { 11: 0 });
  r.born.set(66, r.now());
  for (let t = 0; t < WARM_UP_GRACE_MS; t += 250) r.advance(250, { 66: 1 });
  expect(r.demoted).toEqual([]);
  for (let i = 0; i < 3; i++) r.advance(250, { 66: 1 });
  expect(r.demoted).toEqual([66]);
  r.g.stop();
});

linux('a short burst is forgiven: hunger must hold in every sample', () => {
  const r = rig(500);
  r.runStarts.push(0);
  r.advance(600, { 33: 0 });
  r.advance(300, { 33: 1 });
  r.advance(300, { 33: 0.1 });
  r.advance(300, { 33: 1 });
  r.advance(300, { 33: 0.1 });
  expect(r.demoted).toEqual([]);
  r.g.stop();
});

linux('a cell whose runs are all younger than the grace is not even read', () => {
  const r = rig(500);
  r.runStarts.push(null); // assigned, not started
  r.advance(10_000, { 44: 1 });
  r.runStarts.push(r.now());
  r.advance(250, { 44: 1 });
  r.advance(200, { 44: 1 });
  expect(r.reads()).toBe(0);
  expect(r.demoted).toEqual([]);
  r.g.stop();
});

test('CPU_DEMOTE_AFTER_MS=0 turns it off', async () => {
  const cells = jest.fn(() => []);
  const g = createCpuGovernor({ settings: { cpuDemoteAfterMs: 0 }, cells, sampleMs: 5 });
  g.start();
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(cells).not.toHaveBeenCalled();
  g.stop();
});

linux('it samples only between start() and stop()', async () => {
  const cells = jest.fn(() => []);
  const g = createCpuGovernor({ settings: { cpuDemoteAfterMs: 100 }, cells, sampleMs: 5 });
  await new Promise((resolve) => setTimeout(resolve, 30));
  expect(cells).not.toHaveBeenCalled();
  g.start();
  g.start(); // twice is once
  await new Promise((resolve) => setTimeout(resolve, 60));
  expect(cells.mock.calls.length).toBeGreaterThan(0);
  g.stop();
  const calls = cells.mock.calls.length;
  await new Promise((resolve) => setTimeout(resolve, 30));
  expect(cells.mock.calls.length).toBe(calls);
});

linux("readCellOsThreads reads a live process's threads (not its main thread), and a spinning one's CPU grows", async () => {
  const spinner = new Worker("require('node:worker_threads').parentPort.postMessage('spinning'); const end = Date.now() + 5000; while (Date.now() < end) {}", { eval: true });
  await new Promise((resolve) => spinner.once('message', resolve));
  const before = readCellOsThreads(process.pid)!;
  await new Promise((resolve) => setTimeout(resolve, 500));
  const after = readCellOsThreads(process.pid)!;
  expect(before.has(process.pid)).toBe(false);
  // Even on a loaded machine a spinning OS thread gets some of a core in half a second.
  const grew = [...after].filter(([tid, s]) => before.has(tid) && s.cpuMs - before.get(tid)!.cpuMs >= 30);
  expect(grew.length).toBeGreaterThanOrEqual(1);
  // Each with its age: the spinner started within the last few seconds, this process's threads before it.
  for (const [, s] of after) expect(s.ageMs).toBeGreaterThanOrEqual(0);
  expect(Math.min(...[...after.values()].map((s) => s.ageMs!))).toBeLessThan(60_000);
  expect(readCellOsThreads(999_999_999)).toBeNull();
  await spinner.terminate();
});
