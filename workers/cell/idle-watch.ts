/**
 * A worker that holds no started run has nothing to do: a warm one waits for its next task, its event loop idle.
 * Code a finished run left behind can still wake in it without any handle the worker's checks see (an
 * `Atomics.waitAsync` timeout, a promise chain, a finalizer) and keep its thread busy for good (`for (;;) {}`): its
 * run completed with a clean report, Piscina counts the worker idle, and the CPU governor reads no cell without a
 * long run, so the thread took a core at full priority for as long as the cell lived. Worse, a full pool hands a run
 * of another user to the idle worker used least recently (user-affinity.ts), expecting a refusal: a busy one never
 * reads it, and that run stayed queued for ever (no deadline runs before a run starts).
 *
 * So the cell watches the event loop of each warm worker that holds no started run (Node measures it for the
 * parent, `worker.performance.eventLoopUtilization()`: agent code cannot fake an idle loop but by idling), and ends
 * a worker whose loop stayed busy for `busyForMs`. A run given to it and not yet started is dispatched again.
 */

export interface WatchedWorker {
  threadId: number;
  performance: { eventLoopUtilization(a?: EventLoopUtilization, b?: EventLoopUtilization): EventLoopUtilization };
}

export interface EventLoopUtilization {
  idle: number;
  active: number;
  utilization: number;
}

export interface IdleWatchOptions {
  workers: () => readonly WatchedWorker[];
  /** Workers that may be busy: those running a started run. */
  running: () => ReadonlySet<number>;
  /**
   * When the worker last ended a run (undefined: never). A worker that ran a whole run between two checks is seen
   * idle at both, and its loop busy between them with that run: that interval is no evidence and is not counted.
   */
  lastRunEnded?: (workerId: number) => number | undefined;
  /** Warm workers only: one warming up (lockdown, its agents' modules) is busy and no run's. */
  warm: (workerId: number) => boolean;
  /** The worker kept its loop busy while it held no run: end it. */
  onBusyIdle: (worker: WatchedWorker, busyMs: number) => void;
  /** Share of the interval the loop was active that counts as busy (default 0.25, the CPU governor's). */
  busyShare?: number;
  /** How long it must stay busy (default 2 s: a warm worker's work between tasks takes milliseconds). */
  busyForMs?: number;
  intervalMs?: number;
  now?: () => number;
}

export interface IdleWatch {
  check(): void;
  start(): void;
  stop(): void;
}

export function createIdleWatch(opts: IdleWatchOptions): IdleWatch {
  const busyShare = opts.busyShare ?? 0.25;
  const busyForMs = opts.busyForMs ?? 2000;
  const now = opts.now ?? Date.now;
  /** Per watched worker: its loop's figures at the last check, and since when it has been busy at every check. */
  const seen = new Map<number, { elu: EventLoopUtilization; at: number; busySince: number | null }>();
  let timer: NodeJS.Timeout | null = null;

  function check(): void {
    const running = opts.running();
    const t = now();
    const watched = new Set<number>();
    for (const w of opts.workers()) {
      const id = w.threadId;
      if (running.has(id) || !opts.warm(id)) continue;
      let elu: EventLoopUtilization;
      try {
        elu = w.performance.eventLoopUtilization();
      } catch {
        continue; // the worker is ending
      }
      watched.add(id);
      const prev = seen.get(id);
      // First seen without a run, or it held one since the last check (runs back to back, each between two checks):
      // its loop's figures from now on are what it does without a run.
      const ranSince = (opts.lastRunEnded?.(id) ?? -Infinity) >= (prev?.at ?? Infinity);
      if (!prev || ranSince) {
        seen.set(id, { elu, at: t, busySince: null });
        continue;
      }
      const busy = w.performance.eventLoopUtilization(elu, prev.elu).utilization >= busyShare;
      const busySince = busy ? (prev.busySince ?? t) : null;
      seen.set(id, { elu, at: t, busySince });
      if (busySince !== null && t - busySince >= busyForMs) {
        seen.delete(id);
        opts.onBusyIdle(w, t - busySince);
      }
    }
    // A worker running a run, or gone, starts afresh when it is idle again.
    for (const id of seen.keys()) if (!watched.has(id)) seen.delete(id);
  }

  return {
    check,
    start() {
      if (timer) return;
      timer = setInterval(check, opts.intervalMs ?? 500);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = null;
      seen.clear();
    },
  };
}
