/**
 * The sweeper, on every node: every NODE_LEASE_MS / 5 it takes over the expired leases, one transaction each
 * (server/store/postgresql/cluster-store.ts takeOverExpired: SKIP LOCKED, so two sweeping nodes share the work
 * and no run is taken over twice), publishes the events the takeover wrote, and wakes the nodes to claim the
 * runs that went back to the queue. A run of a dead node therefore runs again within NODE_LEASE_MS plus one
 * sweep of its death. Each sweep also publishes the events of this node's transactions whose COMMIT's answer was
 * lost and that the log turns out to hold (ClusterStore.settleDoubts); a drained node, whose sweeps are over, settles
 * its last ones as it leaves (shared-runs.ts). What stays unheard then: doubts of a node that dies, or that cannot
 * reach its database for the 2 s it waits at its end; their sockets hear those events when they replay.
 */
import type { EventBus } from '../bus/event-bus.js';
import type { Logger } from '../logger.js';
import type { RunEventEnvelope } from '../../protocol/events.js';
import type { ClusterStore, TakeoverDecision } from './cluster-store.js';
import type { RunRecord } from '../store/store.js';

export function createSweeper(deps: {
  store: Pick<ClusterStore, 'takeOverExpired' | 'settleDoubts'>;
  rule: (run: RunRecord, lastSeq: number, nodeId: string, stopAsked: boolean) => TakeoverDecision;
  bus: Pick<EventBus, 'publish'>;
  log: Logger;
  everyMs: number;
  /** A takeover put runs back in the queue or ended some: claim, and count. */
  onTakenOver: (t: { nodeId: string; rerun: number; failed: number; cancelled: number; requeued: number }) => void;
  /** Events of transactions found committed after their answer was lost, published: their runs may wait to be claimed. */
  onSettled: (events: RunEventEnvelope[]) => void;
}) {
  let timer: NodeJS.Timeout | null = null;
  let busy = false;

  async function sweep(): Promise<void> {
    if (busy) return;
    busy = true;
    try {
      await settle();
      for (;;) {
        const taken = await deps.store.takeOverExpired(deps.rule);
        if (!taken) return;
        for (const e of taken.events) deps.bus.publish(e);
        const ended = taken.events.filter((e) => e.type === 'agent_completed');
        const cancelled = ended.filter((e) => (e.payload as { status?: string }).status === 'cancelled').length;
        const failed = ended.length - cancelled;
        const rerun = taken.events.length - ended.length;
        deps.log.warn({ node: taken.nodeId, rerun, failed, cancelled, requeued: taken.requeued - rerun }, 'took over the runs of a node whose lease expired');
        deps.onTakenOver({ nodeId: taken.nodeId, rerun, failed, cancelled, requeued: taken.requeued - rerun });
      }
    } catch (err) {
      deps.log.warn({ err: (err as Error).message }, 'sweep failed; trying again at the next one');
    } finally {
      busy = false;
    }
  }

  /**
   * Publishes what the store's doubts settle to; how many are still pending (a look-up that failed counts them all,
   * asked again next time). On its own in a sweep: a failed look-up holds up no takeover.
   */
  async function settle(): Promise<number> {
    const { events: settled, pending } = await deps.store.settleDoubts().catch((err: unknown) => {
      deps.log.warn({ err: (err as Error).message }, "could not ask whether transactions whose COMMIT's answer was lost committed; asking again at the next sweep");
      return { events: [], pending: Infinity };
    });
    if (settled.length > 0) {
      for (const e of settled) deps.bus.publish(e);
      deps.log.warn({ events: settled.length }, "published the events of transactions whose COMMIT's answer was lost, found committed");
      deps.onSettled(settled);
    }
    return pending;
  }

  return {
    sweep,
    settle,
    start(): void {
      timer ??= setInterval(() => void sweep(), deps.everyMs);
      timer.unref();
    },
    stop(): void {
      if (timer) clearInterval(timer);
      timer = null;
    },
  };
}
