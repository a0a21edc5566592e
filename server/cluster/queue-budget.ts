/**
 * MAX_QUEUED_RUNS across nodes, without a counter every accept would have to lock: each node reads the shared
 * queue's length and the live nodes every NODE_LEASE_MS / 5, and accepts at most its share of the room left,
 * (MAX_QUEUED_RUNS - waiting) / nodes, until the next reading. While every node counts the same nodes, the
 * shares add up to the room and the limit holds; a node that joins between two readings brings one more
 * share, so the queue may exceed MAX_QUEUED_RUNS by at most MAX_QUEUED_RUNS / nodes for one reading's time.
 * The per-user limit (USER_MAX_QUEUED_RUNS) is exact: the accept checks it under the user's lock.
 */
import { CodedError } from '../../protocol/errors.js';
import type { ClusterStore } from './cluster-store.js';

export function createQueueBudget(deps: { store: Pick<ClusterStore, 'census'>; maxQueuedRuns: number; everyMs: number; onRefused: () => void }) {
  let share = Math.ceil(deps.maxQueuedRuns);
  let taken = 0;
  let timer: NodeJS.Timeout | null = null;

  async function read(): Promise<void> {
    const { queued, nodes } = await deps.store.census();
    share = Math.max(0, Math.floor((deps.maxQueuedRuns - queued) / nodes));
    taken = 0;
  }

  return {
    /** Takes one place of this node's share, or refuses OVERLOADED. */
    take(): void {
      if (taken >= share) {
        deps.onRefused();
        throw new CodedError('OVERLOADED', `the run queue is full (MAX_QUEUED_RUNS=${deps.maxQueuedRuns}, across nodes); nothing was accepted`, { retryAfterSeconds: 2 });
      }
      taken++;
    },
    /** The place was not used (the accept failed). */
    giveBack(): void {
      if (taken > 0) taken--;
    },
    async start(): Promise<void> {
      await read();
      timer = setInterval(() => void read().catch(() => undefined), deps.everyMs);
      timer.unref();
    },
    stop(): void {
      if (timer) clearInterval(timer);
      timer = null;
    },
  };
}
