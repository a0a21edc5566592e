/**
 * SIGTERM: refuse new runs, let running ones finish within the grace period, stop the rest as cancelled with
 * their terminal events (deadlines.ts ends those whose cells do not). Queued runs stay queued in the database
 * and resume at the next start: nothing accepted is lost. With several nodes, the waiting runs go back to the
 * shared queue at once, and the runs still running after the grace period move to another node when their
 * agent is safe to repeat (the rest are cancelled as on one node).
 */
import { untilNone, type Deadlines } from './deadlines.js';
import type { LiveRun } from './live-run.js';
import type { LiveRuns } from './live-runs.js';
import type { Scheduler } from './scheduler.js';

/**
 * How long the drain waits for the terminal writes of finished runs. They are committed in milliseconds unless the
 * database cannot take them (PostgreSQL unreachable, SQLite's disk full): then they are kept and retried until it
 * can, and waiting for them held the stop forever, before the database's close, which is what gives up on them
 * (one last attempt on SQLite, CLOSE_GRACE_MS on PostgreSQL; the next start's recovery settles those runs).
 */
export const SETTLE_AT_SHUTDOWN_MS = 5_000;

export function createDrain(deps: {
  live: LiveRuns;
  scheduler: Scheduler;
  deadlines: Deadlines;
  /** Several nodes: the runs waiting here go back to the shared queue, for the other nodes (shared-runs.ts). */
  giveBack?: (runs: LiveRun[]) => Promise<void>;
  /** Several nodes: runs still running after the grace period move to other nodes where they may (shared-runs.ts). */
  move?: (runs: LiveRun[]) => Promise<void>;
}) {
  let draining = false;
  return {
    get draining(): boolean {
      return draining;
    },

    async drain(graceMs: number): Promise<void> {
      draining = true;
      deps.scheduler.stop();
      // Left for the next start: no terminal event, but whoever awaits their end is released.
      const waiting = deps.scheduler.dropWaiting();
      for (const run of waiting) {
        deps.deadlines.clear(run);
        run.markSettled();
      }
      if (deps.giveBack) {
        for (const run of waiting) deps.live.delete(run.id);
        await deps.giveBack(waiting);
      }
      const inFlight = () => deps.live.inFlight();
      await untilNone(inFlight, graceMs);
      if (deps.move) await deps.move(inFlight());
      await deps.deadlines.stopAtShutdown(inFlight);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all([...deps.live.values()].filter((r) => r.phase === 'finished').map((r) => r.settled)),
        new Promise((resolve) => (timer = setTimeout(resolve, SETTLE_AT_SHUTDOWN_MS))),
      ]);
      clearTimeout(timer);
      // Every run is settled (or its terminal write waits for a database that the close gives up on): no deadline is
      // left to keep, not even a wedged-cell watch (the cells stop next).
      deps.deadlines.stop();
    },
  };
}

export type Drain = ReturnType<typeof createDrain>;
