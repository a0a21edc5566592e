/**
 * CPU-hungry runs yield to short ones. A run whose thread keeps a core busy (over a quarter of one between
 * two samples, 250 ms apart) after CPU_DEMOTE_AFTER_MS gets its OS thread's nice value raised to 19, so the scheduler
 * serves every other thread first (the front, the cells, short runs) and gives it what is left. An agent
 * that waits on a model or a tool uses little CPU and is never touched; a `while (true) {}` or a garbage
 * collector fighting a heap limit is. When the run ends the thread gets its priority back. Lowering a nice
 * value needs CAP_SYS_NICE, which a container's unprivileged user (and often its root) lacks: then the thread
 * sees its own priority lowered when its run ends, retires instead of returning to the pool, and is replaced
 * (workers/thread/thread-runtime.ts).
 *
 * Linux only (per-thread CPU times in /proc, per-thread nice values); elsewhere it does nothing.
 */
import fs from 'node:fs';

export interface CpuGovernorOptions {
  /** 0 turns the governor off. */
  demoteAfterMs: number;
  /** Whether this process may give a thread its priority back (canRaisePriority()). */
  canRestore: boolean;
  sampleMs?: number;
  /** Share of one core, between two samples, that counts as hungry (default 0.25). */
  hungryShare?: number;
  setPriority: (tid: number, nice: number) => void;
  /** The thread's CPU time so far in ms (user + system), or null if it is gone. */
  cpuMs?: (tid: number) => number | null;
  now?: () => number;
}

export const DEMOTED_NICE = 19;
const CLOCK_TICK_MS = 10; // USER_HZ is 100 on Linux

/** CPU time of one of this process's threads, from /proc/self/task/<tid>/stat (fields 14 and 15, in ticks). */
export function threadCpuMs(tid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * CLOCK_TICK_MS;
  } catch {
    return null;
  }
}

interface Watched {
  tid: number;
  since: number;
  lastCpuMs: number | null;
  lastAt: number;
  demoted: boolean;
}

export interface CpuGovernor {
  watch(runId: string, tid: number): void;
  /** Stops watching; says whether the run was demoted and whether its thread got its priority back. */
  release(runId: string): { demoted: boolean; restored: boolean };
  readonly demotedNow: number;
  stop(): void;
}

export function createCpuGovernor(opts: CpuGovernorOptions): CpuGovernor {
  const cpuMs = opts.cpuMs ?? threadCpuMs;
  const now = opts.now ?? Date.now;
  const sampleMs = opts.sampleMs ?? 250;
  // A quarter, not a half: on saturated cores a spinning thread gets only its share of them, and must still
  // be told from a thread waiting on I/O (which uses next to none).
  const hungryShare = opts.hungryShare ?? 0.25;
  const watched = new Map<string, Watched>();
  let timer: NodeJS.Timeout | null = null;

  function sample(): void {
    const t = now();
    for (const w of watched.values()) {
      const cpu = cpuMs(w.tid);
      if (cpu === null) continue;
      const hungry = w.lastCpuMs !== null && t > w.lastAt && (cpu - w.lastCpuMs) / (t - w.lastAt) >= hungryShare;
      w.lastCpuMs = cpu;
      w.lastAt = t;
      if (!w.demoted && hungry && t - w.since >= opts.demoteAfterMs) {
        try {
          opts.setPriority(w.tid, DEMOTED_NICE);
          w.demoted = true;
        } catch {
          // the thread just ended, or the OS refused: nothing to do
        }
      }
    }
  }

  const enabled = opts.demoteAfterMs > 0 && process.platform === 'linux';
  return {
    watch(runId, tid) {
      if (!enabled) return;
      // No /proc read here: most runs end before the first sample, which takes the starting point.
      watched.set(runId, { tid, since: now(), lastCpuMs: null, lastAt: now(), demoted: false });
      if (!timer) {
        timer = setInterval(sample, sampleMs);
        timer.unref();
      }
    },
    release(runId) {
      const w = watched.get(runId);
      watched.delete(runId);
      if (!w?.demoted) return { demoted: false, restored: true };
      if (!opts.canRestore) return { demoted: true, restored: false };
      try {
        opts.setPriority(w.tid, 0);
        return { demoted: true, restored: true };
      } catch {
        return { demoted: true, restored: false };
      }
    },
    get demotedNow() {
      let n = 0;
      for (const w of watched.values()) if (w.demoted) n++;
      return n;
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = null;
      watched.clear();
    },
  };
}
