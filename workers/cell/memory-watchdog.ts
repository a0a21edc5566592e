/**
 * The cell's memory watchdog. resourceLimits cap each worker's JS heap only; Buffers, ArrayBuffers and
 * WebAssembly memory are not counted. The cell watches its whole footprint (RSS) and dies before the machine
 * runs short; the front then finds the run responsible by re-running the cell's runs alone (quarantine).
 * One of the things that end a run that will not end: server/runs/deadlines.ts lists them all.
 */
const WATCHDOG_INTERVAL_MS = 25;

export function createMemoryWatchdog(deps: {
  limitBytes: number;
  rssBytes: () => number;
  /** Called once, when the cell is over its limit: the cell reports it and exits. */
  onExceeded: (rssBytes: number, limitBytes: number) => void;
}) {
  let timer: NodeJS.Timeout | null = null;
  function stop(): void {
    if (timer) clearInterval(timer);
    timer = null;
  }
  return {
    start(): void {
      if (timer) return;
      timer = setInterval(() => {
        const rssBytes = deps.rssBytes();
        if (rssBytes <= deps.limitBytes) return;
        stop();
        deps.onExceeded(rssBytes, deps.limitBytes);
      }, WATCHDOG_INTERVAL_MS);
      timer.unref();
    },
    stop,
  };
}
