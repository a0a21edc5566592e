/**
 * CPU-hungry runs yield to short ones. The front samples the OS threads of every cell that holds a run
 * executing for at least CPU_DEMOTE_AFTER_MS; an OS thread that kept over a quarter of a core busy in every
 * sample for that long is lowered to nice 19, so the scheduler serves every other one first (the front, the
 * cells, short runs). An agent that waits on a model or a tool uses next to no CPU and is never touched; a
 * `while (true) {}` or a garbage collector fighting a heap limit is.
 *
 * Why in the front: cells run under Node's permission model and may not read /proc (their /proc/self/mem
 * holds every run of the cell), so they cannot measure their OS threads. The front reads /proc/<cell>/task/*,
 * which names OS threads but not runs or workers: the worker itself notices its lowered priority when its run
 * ends, and takes it back or retires (workers/worker/worker-runtime.ts). The cell lowers the priority (same OS
 * user as its workers), the front only decides. Linux only.
 */
import fs from 'node:fs';
import { DEMOTED_NICE } from '../../protocol/cell-messages.js';
import type { CpuGovernorSettings } from '../config-views.js';

export { DEMOTED_NICE };
const CLOCK_TICK_MS = 10; // USER_HZ is 100 on Linux
/**
 * The front names OS threads, not runs or workers (cells may not say which OS thread is which worker). A worker
 * warming up is as hungry as a busy run for a while (its modules, lockdown; seconds on a busy machine): lowered then,
 * it could not take its priority back (no CAP_SYS_NICE), refused the run given to it, and so did each fresh worker
 * after it (helper-81). So an OS thread's first seconds are not held against it. The cost: a hungry run on a worker
 * that started less than this ago is lowered up to this much later.
 */
export const WARM_UP_GRACE_MS = 5000;

export interface OsThreadSample {
  cpuMs: number;
  nice: number;
  /** How long ago the OS thread started (absent: long ago). */
  ageMs?: number;
}

/** CPU time (user + system) and nice value of each OS thread of `pid` except its main thread, or null if it is gone. */
export function readCellOsThreads(pid: number): Map<number, OsThreadSample> | null {
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return null;
  }
  let uptimeMs: number;
  try {
    uptimeMs = Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000;
  } catch {
    uptimeMs = Infinity;
  }
  const out = new Map<number, OsThreadSample>();
  for (const t of tids) {
    const tid = Number(t);
    if (tid === pid) continue;
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // Field 22, the start time in clock ticks since boot.
      out.set(tid, { cpuMs: (Number(f[11]) + Number(f[12])) * CLOCK_TICK_MS, nice: Number(f[16]), ageMs: uptimeMs - Number(f[19]) * CLOCK_TICK_MS });
    } catch {
      // the OS thread ended between readdir and read
    }
  }
  return out;
}

export interface GovernedCell {
  id: string;
  pid: number;
  /** Start times of the runs executing in the cell (null: assigned, not started). */
  runStarts: Iterable<number | null>;
  /**
   * Node's own OS threads of the cell (V8's platform, libuv), never demoted: a run that makes the garbage collector
   * work hard must not slow every run of its cell, nor its own way to OUT_OF_MEMORY.
   */
  systemOsThreads: ReadonlySet<number>;
  demote(tid: number): void;
}

export interface CpuGovernorOptions {
  /** cpuDemoteAfterMs (CPU_DEMOTE_AFTER_MS): how long a run's OS thread may stay hungry; 0 turns the governor off. */
  settings: CpuGovernorSettings;
  cells: () => GovernedCell[];
  sampleMs?: number;
  /** Share of one core, between two samples, that counts as hungry (default 0.25). */
  hungryShare?: number;
  /** An OS thread younger than this is never hungry: a worker warming up (default WARM_UP_GRACE_MS). */
  warmUpGraceMs?: number;
  readOsThreads?: (pid: number) => Map<number, OsThreadSample> | null;
  now?: () => number;
}

interface Seen {
  cpuMs: number;
  at: number;
  ageMs: number | undefined;
  /** Since when it has been hungry in every sample (null: not hungry at the last sample). */
  hungrySince: number | null;
}

export interface CpuGovernor {
  /** One sampling pass (the timer calls it; tests call it by hand). */
  sample(): void;
  /** Starts sampling every sampleMs (off when CPU_DEMOTE_AFTER_MS is 0 or not on Linux). */
  start(): void;
  stop(): void;
}

export function createCpuGovernor(opts: CpuGovernorOptions): CpuGovernor {
  const now = opts.now ?? Date.now;
  const readOsThreads = opts.readOsThreads ?? readCellOsThreads;
  // A quarter, not a half: on saturated cores a spinning OS thread gets only its share of them, and must still
  // be told from one waiting on I/O (which uses next to none).
  const hungryShare = opts.hungryShare ?? 0.25;
  const warmUpGraceMs = opts.warmUpGraceMs ?? WARM_UP_GRACE_MS;
  const seen = new Map<string, Map<number, Seen>>();

  function sample(): void {
    const t = now();
    const live = new Set<string>();
    for (const cell of opts.cells()) {
      live.add(cell.id);
      let oldest = Infinity;
      for (const s of cell.runStarts) if (s !== null && s < oldest) oldest = s;
      // Nothing has run long enough to be demoted: forget what was measured, read nothing.
      if (t - oldest < opts.settings.cpuDemoteAfterMs) {
        seen.delete(cell.id);
        continue;
      }
      const osThreads = readOsThreads(cell.pid);
      if (!osThreads) continue;
      const before = seen.get(cell.id) ?? new Map<number, Seen>();
      const after = new Map<number, Seen>();
      for (const [tid, s] of osThreads) {
        if (cell.systemOsThreads.has(tid)) continue;
        const prev = before.get(tid);
        // A thread's CPU is held against it only once it is older than the grace: until then it may be a worker
        // warming up, hungry and no run's.
        const grown = prev !== undefined && (prev.ageMs ?? Infinity) >= warmUpGraceMs;
        const hungry = grown && t > prev!.at && (s.cpuMs - prev!.cpuMs) / (t - prev!.at) >= hungryShare;
        const hungrySince = hungry ? (prev!.hungrySince ?? prev!.at) : null;
        after.set(tid, { cpuMs: s.cpuMs, at: t, hungrySince, ageMs: s.ageMs });
        if (hungrySince !== null && t - hungrySince >= opts.settings.cpuDemoteAfterMs && s.nice < DEMOTED_NICE) cell.demote(tid);
      }
      seen.set(cell.id, after);
    }
    for (const id of seen.keys()) if (!live.has(id)) seen.delete(id);
  }

  const enabled = opts.settings.cpuDemoteAfterMs > 0 && process.platform === 'linux';
  let timer: NodeJS.Timeout | null = null;
  return {
    sample,
    start() {
      if (!enabled || timer) return;
      timer = setInterval(sample, opts.sampleMs ?? 250);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = null;
      seen.clear();
    },
  };
}
