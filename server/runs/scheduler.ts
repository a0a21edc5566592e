/**
 * Which waiting run goes to which cell, and when. Runs wait in the fair queue (per-user FIFO, round-robin
 * across users) or, as suspects of a cell death, in quarantine, which is served first, one run per
 * quarantine cell. A run leaves the queue only when its user is under the concurrency cap and its
 * conversation has no other run active (occupancy.ts), and only when a cell has a free worker.
 *
 * `pump` is called whenever capacity may have appeared (a run accepted or finished, a cell ready or dead),
 * and every PUMP_EVERY_MS while started: runs that run long stop counting against their cell's capacity over
 * time (CellHandle.freeSlots), without any message to say so.
 */
import type { CellHandle } from '../cells/cell-handle.js';
import type { CellSupervisor } from '../cells/supervisor.js';
import { createFairQueue } from './fair-queue.js';
import type { LiveRun } from './live-run.js';
import { createOccupancy } from './occupancy.js';

const PUMP_EVERY_MS = 250;
/** A newly accepted run still waiting this long is told where it stands (`run_queued`). */
const QUEUED_NOTICE_MS = 1000;

export function createScheduler(deps: {
  cells: () => Pick<CellSupervisor, 'pick' | 'pickQuarantine'>;
  /** Sends the run to the cell (dispatch.ts). */
  dispatch: (run: LiveRun, cell: CellHandle) => void;
  /** A newly accepted run still waits after QUEUED_NOTICE_MS, `position` among its user's runs. */
  onStillWaiting: (run: LiveRun, position: number) => void;
  config: { userMaxConcurrentRuns: number };
}) {
  const queue = createFairQueue();
  /** Suspects of a cell death, waiting to run alone in a quarantine cell. */
  const quarantine = new Map<string, LiveRun>();
  const occupancy = createOccupancy(deps.config);
  const notices = new Map<LiveRun, NodeJS.Timeout>();
  let pumpTimer: NodeJS.Timeout | null = null;

  function send(run: LiveRun, cell: CellHandle): void {
    occupancy.occupy(run);
    deps.dispatch(run, cell);
  }

  function pump(): void {
    for (const run of quarantine.values()) {
      const cell = deps.cells().pickQuarantine(quarantine.size);
      if (!cell) break;
      quarantine.delete(run.id);
      send(run, cell);
    }
    while (queue.size > 0) {
      const cell = deps.cells().pick();
      if (!cell) return;
      const run = queue.take(occupancy.eligible);
      if (!run) return;
      send(run, deps.cells().pick(run.userId) ?? cell);
    }
  }

  function dropNotice(run: LiveRun): void {
    const timer = notices.get(run);
    if (timer === undefined) return;
    clearTimeout(timer);
    notices.delete(run);
  }

  return {
    pump,

    /** Starts the periodic pump. */
    start(): void {
      if (pumpTimer) return;
      pumpTimer = setInterval(() => (queue.size > 0 || quarantine.size > 0) && pump(), PUMP_EVERY_MS);
      pumpTimer.unref();
    },

    stop(): void {
      if (pumpTimer) clearInterval(pumpTimer);
      pumpTimer = null;
    },

    /** Runs waiting (queue and quarantine). */
    get waiting(): number {
      return queue.size + quarantine.size;
    },

    waitingRuns(): LiveRun[] {
      return [...queue.values(), ...quarantine.values()];
    },

    /** Waiting runs plus places reserved by requests being accepted (MAX_QUEUED_RUNS). */
    get claimed(): number {
      return queue.claimed;
    },

    /** The same for one user (USER_MAX_QUEUED_RUNS). */
    claimedFor(userId: string): number {
      return queue.claimedFor(userId);
    },

    /** Holds one place for the user across the awaits of its acceptance; returns the release. */
    reserve(userId: string): () => void {
      return queue.reserve(userId);
    },

    /** Queues a run at the back of its user's line (recovered at start-up). */
    enqueue(run: LiveRun): void {
      queue.add(run);
    },

    /** Queues a newly accepted run, which hears where it stands if it still waits after QUEUED_NOTICE_MS. */
    enqueueAccepted(run: LiveRun): void {
      queue.add(run);
      notices.set(
        run,
        setTimeout(() => {
          notices.delete(run);
          if (run.phase === 'queued' && queue.position(run) > 0) deps.onStillWaiting(run, queue.position(run));
        }, QUEUED_NOTICE_MS),
      );
    },

    /**
     * A dispatched run that never reached its cell goes back where it came from: a suspect to quarantine,
     * any other run to the head of its user's line (a later message of its conversation must not overtake it).
     */
    putBack(run: LiveRun): void {
      occupancy.vacate(run);
      if (run.suspect) quarantine.set(run.id, run);
      else queue.addFirst(run);
    },

    /** A suspect of a cell death waits to run again alone, in a quarantine cell. */
    quarantine(run: LiveRun): void {
      dropNotice(run);
      occupancy.vacate(run);
      quarantine.set(run.id, run);
    },

    /** The run is over: it no longer waits nor counts. */
    release(run: LiveRun): void {
      dropNotice(run);
      queue.remove(run);
      quarantine.delete(run.id);
      occupancy.vacate(run);
    },

    /** Shutdown: every waiting run leaves the line (it stays queued in the store); returns them. */
    dropWaiting(): LiveRun[] {
      const dropped = [...queue.values(), ...quarantine.values()];
      for (const run of dropped) dropNotice(run);
      queue.clear();
      quarantine.clear();
      return dropped;
    },
  };
}

export type Scheduler = ReturnType<typeof createScheduler>;
