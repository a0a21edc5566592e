/**
 * The cell's CPU governor, against a fake clock and fake per-thread CPU times: who gets demoted, when, and
 * what happens when the OS will not give a priority back. Plus one real reading of this thread's CPU time.
 */
import { createCpuGovernor, DEMOTED_NICE, threadCpuMs } from '../workers/cell/cpu-governor';
import { canRaisePriority } from '../workers/os-thread';

function rig(demoteAfterMs: number, canRestore = true) {
  let t = 0;
  const cpu = new Map<number, number>();
  const calls: [number, number][] = [];
  const g = createCpuGovernor({
    demoteAfterMs,
    canRestore,
    sampleMs: 60_000, // sampled by hand below, through the fake clock
    now: () => t,
    cpuMs: (tid) => cpu.get(tid) ?? null,
    setPriority: (tid, nice) => {
      calls.push([tid, nice]);
    },
  });
  // Advance the clock by `ms`, charging each thread its share of it, then sample.
  const advance = (ms: number, shares: Record<number, number>) => {
    t += ms;
    for (const [tid, share] of Object.entries(shares)) cpu.set(Number(tid), (cpu.get(Number(tid)) ?? 0) + ms * share);
    jest.advanceTimersByTime(60_000);
  };
  return { g, cpu, calls, advance };
}

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

const linux = process.platform === 'linux' ? test : test.skip;

linux('a thread that keeps a core busy past the grace is demoted; one waiting on I/O never is', () => {
  const { g, cpu, calls, advance } = rig(500);
  cpu.set(11, 0);
  cpu.set(22, 0);
  g.watch('hog', 11);
  g.watch('waiter', 22);
  advance(250, { 11: 1, 22: 0.02 });
  expect(calls).toEqual([]); // busy, but still within the grace
  advance(250, { 11: 1, 22: 0.02 });
  expect(calls).toEqual([[11, DEMOTED_NICE]]);
  advance(5000, { 11: 1, 22: 0.05 });
  expect(calls).toEqual([[11, DEMOTED_NICE]]); // once
  expect(g.demotedNow).toBe(1);
  expect(g.release('waiter')).toEqual({ demoted: false, restored: true });
  expect(g.release('hog')).toEqual({ demoted: true, restored: true });
  expect(calls).toEqual([[11, DEMOTED_NICE], [11, 0]]);
  g.stop();
});

linux('a short burst is forgiven: the share is measured between samples, not since the start', () => {
  const { g, cpu, calls, advance } = rig(500);
  cpu.set(33, 0);
  g.watch('bursty', 33);
  advance(300, { 33: 1 });
  advance(300, { 33: 0.1 });
  advance(300, { 33: 0.1 });
  expect(calls).toEqual([]);
  g.stop();
});

linux('without CAP_SYS_NICE the demotion is never undone (the thread retires itself instead)', () => {
  const { g, cpu, calls, advance } = rig(100, false);
  cpu.set(44, 0);
  g.watch('hog', 44);
  advance(200, { 44: 1 });
  advance(200, { 44: 1 });
  expect(g.release('hog')).toEqual({ demoted: true, restored: false });
  expect(calls).toEqual([[44, DEMOTED_NICE]]); // no attempt to lower a nice value it may not lower
  g.stop();
});

linux('canRaisePriority reads CAP_SYS_NICE from this process', () => {
  const capEff = require('node:fs').readFileSync('/proc/self/status', 'utf8').match(/^CapEff:\s*([0-9a-f]+)/m)[1];
  expect(canRaisePriority()).toBe((BigInt(`0x${capEff}`) & (1n << 23n)) !== 0n);
});

test('CPU_DEMOTE_AFTER_MS=0 turns it off', () => {
  const { g, cpu, calls, advance } = rig(0);
  cpu.set(55, 0);
  g.watch('hog', 55);
  advance(10_000, { 55: 1 });
  expect(calls).toEqual([]);
  g.stop();
});

linux("threadCpuMs reads a live thread's CPU time and grows as it works", () => {
  jest.useRealTimers();
  const tid = Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop());
  const before = threadCpuMs(tid)!;
  const end = Date.now() + 60;
  while (Date.now() < end) {
    // work
  }
  expect(threadCpuMs(tid)!).toBeGreaterThan(before);
  expect(threadCpuMs(999_999_999)).toBeNull();
});
