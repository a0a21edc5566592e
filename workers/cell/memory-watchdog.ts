/**
 * The cell's memory watchdog. resourceLimits cap each worker's JS heap only; Buffers, ArrayBuffers and
 * WebAssembly memory are not counted. The cell watches its whole footprint (RSS) and dies before the machine
 * runs short; the front then finds the run responsible by re-running the cell's runs alone (quarantine).
 * One of the things that end a run that will not end: server/runs/deadlines.ts lists them all.
 *
 * Paced by what can allocate: every 25 ms while runs are in the cell or a worker is warming up (it imports the
 * agents' modules, whose top-level code runs then), and for a second after (a run's worker is recycled if it left
 * a handle behind, and that can land just after the run settles); every 250 ms at rest, when no agent code runs. Waking up costs more than the read itself (~10 µs): measured here, a
 * 25 ms timer kept an otherwise idle Node process at ~9.5 ms of CPU per second, 250 ms at ~1.
 */
export const BUSY_INTERVAL_MS = 25;
export const REST_INTERVAL_MS = 250;
/** How long after the last run the watchdog keeps the busy pace. */
export const BUSY_TAIL_MS = 1000;

export function createMemoryWatchdog(deps: {
  limitBytes: number;
  rssBytes: () => number;
  /** Called once, when the cell is over its limit: the cell reports it and exits. */
  onExceeded: (rssBytes: number, limitBytes: number) => void;
  /** Whether a worker is starting (Piscina starts one for a retired or crashed worker, a spare, a burst). */
  warming?: () => boolean;
  now?: () => number;
}) {
  const now = deps.now ?? Date.now;
  let timer: NodeJS.Timeout | null = null;
  let running = false;
  let runs = 0;
  let lastBusyAt = -Infinity;

  function interval(): number {
    if (runs > 0 || deps.warming?.()) lastBusyAt = now();
    return now() - lastBusyAt < BUSY_TAIL_MS ? BUSY_INTERVAL_MS : REST_INTERVAL_MS;
  }

  function schedule(ms: number): void {
    if (timer) clearTimeout(timer);
    timer = setTimeout(check, ms);
    timer.unref();
  }

  function check(): void {
    // Called by its timer or at once (a first run): either way, one chain of checks.
    if (timer) clearTimeout(timer);
    timer = null;
    if (!running) return;
    const rssBytes = deps.rssBytes();
    if (rssBytes > deps.limitBytes) {
      stop();
      return deps.onExceeded(rssBytes, deps.limitBytes);
    }
    schedule(interval());
  }

  function stop(): void {
    running = false;
    if (timer) clearTimeout(timer);
    timer = null;
  }

  return {
    start(): void {
      if (running) return;
      running = true;
      schedule(interval());
    },
    /** The number of runs in the cell changed. A first run checks at once and sets the busy pace. */
    runsInCell(count: number): void {
      const wasIdle = runs === 0;
      runs = count;
      lastBusyAt = now();
      if (running && wasIdle && count > 0) check();
    },
    /** A worker is starting or about to (one just went away): check at once, and keep the busy pace meanwhile. */
    workerStarting(): void {
      lastBusyAt = now();
      if (running) check();
    },
    stop,
  };
}
