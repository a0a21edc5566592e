/**
 * Which waiting run goes to which cell, and when. Runs wait in the fair queue (per-user FIFO, round-robin
 * across users) or, as suspects of a cell death, in quarantine, which is served first, one run per
 * quarantine cell. A run leaves the queue only when its user is under the concurrency cap and its
 * conversation has no other run active (occupancy.ts), and only when a cell has a free worker. The runs of a
 * user whose run killed its cell lately (cell-killers.ts) wait in the same line but go only to the cell killers'
 * quarantine cell, one at a time: they can no longer kill a cell with others' runs inside, nor hold a cell that
 * suspects wait for.
 *
 * `pump` is called whenever capacity may have appeared (a run accepted or finished, a cell ready or dead),
 * and every PUMP_EVERY_MS while started: runs that run long stop counting against their cell's capacity over
 * time (CellHandle.freeSlots), without any message to say so.
 *
 * On one node the queue, the caps and the occupancy are this process's memory; `admit` checks and holds the
 * place in the turn it is called, so a burst cannot pass the check together. With several nodes (`claim` given:
 * server/runs/shared-runs.ts) the runs wait in the shared queue in PostgreSQL, where the accept checks the caps
 * and the claim serves users in turn under their caps; this node's own line then holds only the runs it claimed
 * and could not place yet, the runs its cells' deaths put back, and its quarantine.
 */
import type { CellHandle } from '../cells/cell-handle.js';
import type { CellSupervisor } from '../cells/supervisor.js';
import type { Metrics } from '../metrics.js';
import { CodedError } from '../../protocol/errors.js';
import type { CellKillers } from './cell-killers.js';
import { createFairQueue } from './fair-queue.js';
import type { LiveRun } from './live-run.js';
import { createOccupancy } from './occupancy.js';

const PUMP_EVERY_MS = 250;
/** A newly accepted run still waiting this long is told where it stands (`run_queued`). */
const QUEUED_NOTICE_MS = 1000;

export function createScheduler(deps: {
  cells: Pick<CellSupervisor, 'pick' | 'pickQuarantine' | 'pickKillerCell' | 'cells'>;
  /** Sends the run to the cell (dispatch.ts). */
  dispatch: (run: LiveRun, cell: CellHandle) => void;
  /** A newly accepted run still waits after QUEUED_NOTICE_MS, `position` among its user's runs. */
  onStillWaiting: (run: LiveRun, position: number) => void;
  metrics: Pick<Metrics, 'runsRefused'>;
  settings: { maxQueuedRuns: number; userMaxQueuedRuns: number; userMaxConcurrentRuns: number };
  /** Users whose runs run alone in quarantine cells for now. */
  killers: Pick<CellKillers, 'has' | 'any'>;
  /**
   * Several nodes: up to `max` runs from the shared queue (server/runs/shared-runs.ts), held by this node and
   * ready to dispatch. Asked once this node's own waiting runs are placed and its cells still have room.
   */
  claim?: (max: number) => Promise<LiveRun[]>;
}) {
  const { cells, metrics, settings } = deps;
  const queue = createFairQueue();
  /** Suspects of a cell death, waiting to run alone in a quarantine cell. */
  const quarantine = new Map<string, LiveRun>();
  const occupancy = createOccupancy(deps.settings);
  const notices = new Map<LiveRun, NodeJS.Timeout>();
  let pumpTimer: NodeJS.Timeout | null = null;
  /** A claim is on its way (one at a time). */
  let claiming = false;
  /** A pump came while a claim was on its way: claim again once it is back (that pump's run may not have been seen). */
  let claimAgain = false;
  let stopped = false;

  function send(run: LiveRun, cell: CellHandle): void {
    occupancy.occupy(run);
    deps.dispatch(run, cell);
  }

  /** A run that may go to a serving cell now: its user and conversation have room, and its user is not a cell killer. */
  const servable = (run: LiveRun) => occupancy.eligible(run) && !deps.killers.has(run.userId);
  /** A cell killer's run that may go to the cell killers' quarantine cell now: none of its user's runs is in flight. */
  const isolable = (run: LiveRun) => deps.killers.has(run.userId) && occupancy.activeFor(run.userId) === 0 && occupancy.eligible(run);

  /** The next cell killer's run, in turn across those users, alone in the cell killers' quarantine cell. */
  function isolateKiller(): void {
    if (!deps.killers.any) return;
    for (const waiting of queue.values()) {
      if (!isolable(waiting)) continue;
      // One is waiting: the cell is started if it does not exist yet.
      const cell = cells.pickKillerCell();
      const run = cell && queue.take(isolable);
      if (cell && run) send(run, cell);
      return;
    }
  }

  /** Places what waits here; with several nodes, claims. True when this node has room and claims now or next. */
  function pump(): boolean {
    for (const run of quarantine.values()) {
      const cell = cells.pickQuarantine(quarantine.size);
      if (!cell) break;
      quarantine.delete(run.id);
      send(run, cell);
    }
    isolateKiller();
    while (queue.size > 0) {
      const cell = cells.pick();
      if (!cell) return false;
      const run = queue.take(servable);
      if (!run) break;
      send(run, cells.pick(run.userId) ?? cell);
    }
    if (!deps.claim || stopped) return false;
    if (claiming) return (claimAgain = true);
    return claimShared(deps.claim);
  }

  function claimShared(claim: (max: number) => Promise<LiveRun[]>): boolean {
    const free = cells.cells().reduce((n, c) => n + (c.quarantine ? 0 : c.freeSlots), 0);
    if (free <= 0) return false;
    claiming = true;
    claimAgain = false;
    const settled = (again: boolean) => {
      claiming = false;
      if (again || claimAgain) setImmediate(pump);
    };
    claim(free).then(
      (runs) => {
        let killers = false;
        for (const run of runs) {
          const cell = deps.killers.has(run.userId) ? null : (cells.pick(run.userId) ?? cells.pick());
          // Its cells filled up meanwhile, or its user kills cells (it goes to quarantine on the next pump): it waits
          // here, first in its user's line (it is this node's now).
          if (cell && !stopped) send(run, cell);
          else {
            queue.addFirst(run);
            killers ||= deps.killers.has(run.userId);
          }
        }
        settled((runs.length > 0 && runs.length >= free) || killers);
      },
      () => settled(false),
    );
    return true;
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
      stopped = false;
      // Several nodes: the shared queue has runs that no local event announces (accepted elsewhere).
      pumpTimer = setInterval(() => (queue.size > 0 || quarantine.size > 0 || deps.claim) && pump(), PUMP_EVERY_MS);
      pumpTimer.unref();
    },

    /** Stops the periodic pump and the pending `run_queued` notices (shutdown, or a start-up that failed). */
    stop(): void {
      if (pumpTimer) clearInterval(pumpTimer);
      pumpTimer = null;
      stopped = true;
      for (const timer of notices.values()) clearTimeout(timer);
      notices.clear();
    },

    /** Runs waiting (queue and quarantine). */
    get waiting(): number {
      return queue.size + quarantine.size;
    },

    waitingRuns(): LiveRun[] {
      return [...queue.values(), ...quarantine.values()];
    },

    /**
     * Admits one more run of the user into the line, or refuses it OVERLOADED: the waiting runs plus the places
     * held by requests being accepted count against MAX_QUEUED_RUNS (beyond the cells' free workers) and
     * USER_MAX_QUEUED_RUNS. Checked and held in the turn it is called (before its first await), so a burst
     * cannot pass the check together (tests/limits-burst.test.ts). Resolves to the release of the place held,
     * called once the run is queued (it then counts itself) or refused.
     */
    async admit(userId: string): Promise<() => void> {
      const free = cells.cells().reduce((n, c) => n + c.freeSlots, 0);
      if (queue.claimed >= settings.maxQueuedRuns + free) {
        metrics.runsRefused.inc({ code: 'OVERLOADED' });
        throw new CodedError('OVERLOADED', `the run queue is full (MAX_QUEUED_RUNS=${settings.maxQueuedRuns}); nothing was accepted`, { retryAfterSeconds: 2 });
      }
      if (queue.claimedFor(userId) >= settings.userMaxQueuedRuns) {
        metrics.runsRefused.inc({ code: 'OVERLOADED' });
        throw new CodedError('OVERLOADED', `you have ${settings.userMaxQueuedRuns} runs waiting (USER_MAX_QUEUED_RUNS); nothing was accepted`, { retryAfterSeconds: 5 });
      }
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
