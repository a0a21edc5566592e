/**
 * A drained node's last give-back (deregister: its runs back to the queue, those whose stop was asked ended) whose
 * COMMIT's answer was lost keeps its endings in doubt; the sweeper, which settles doubts, stopped before it. The node
 * settles them as it leaves, while its bus is up: the ending was never published (helper-83). For 2 s at most,
 * however long the database takes to answer (helper-84).
 */
import type { RunEventEnvelope } from '../../protocol/events';
import { createSharedRuns } from '../../server/runs/shared-runs';

const terminal = { run_id: 'r1', type: 'agent_completed', seq: 3, payload: { status: 'cancelled', error: { code: 'CANCELLED' } } } as unknown as RunEventEnvelope;

/** A node on a fake store whose deregister's COMMIT answer is lost (the ending kept in doubt) and that settles as `settleDoubts` says. */
function drainedNode(settleDoubts: (inDoubt: RunEventEnvelope[]) => Promise<{ events: RunEventEnvelope[]; pending: number }>) {
  let inDoubt: RunEventEnvelope[] = [];
  const published: string[] = [];
  const counter = { inc: () => undefined };
  const cluster = {
    register: async () => ({ lease: 'L1', replaced: 0 }),
    renew: async () => ({ alive: true, stopsAsked: [] }),
    census: async () => ({ queued: 0, nodes: 1 }),
    takeOverExpired: async () => null,
    deregister: async () => {
      inDoubt = [terminal];
      throw Object.assign(new Error('Connection terminated unexpectedly'), { code: 'DB_UNAVAILABLE' });
    },
    settleDoubts: () => {
      const asked = inDoubt;
      inDoubt = [];
      return settleDoubts(asked);
    },
  };
  const shared = createSharedRuns({
    cluster: cluster as never,
    signals: { onWake: () => undefined, onStopRun: () => undefined, wake: () => undefined, nodeDied: () => undefined } as never,
    bus: { publish: (e) => void published.push(`${e.run_id}:${e.type}`) },
    relay: {} as never,
    live: { values: () => [], get: () => undefined } as never,
    scheduler: () => ({ pump: () => undefined }) as never,
    deadlines: () => ({}) as never,
    cells: { agents: () => [], cells: () => [] } as never,
    metrics: new Proxy({}, { get: () => counter }) as never,
    log: { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined } as never,
    settings: { nodeId: 'n1', nodeLeaseMs: 10_000, maxQueuedRuns: 100, userMaxQueuedRuns: 10, userMaxConcurrentRuns: 10, maxRunAttempts: 3 },
  });
  return { shared, published };
}

test('a deregister whose COMMIT answer was lost: its ending is published as the node leaves, once the log is found to hold it', async () => {
  const { shared, published } = drainedNode(async (inDoubt) => ({ events: inDoubt, pending: 0 }));
  await shared.start();
  await shared.stop(true);
  expect(published).toEqual(['r1:agent_completed']);
});

test('the node leaves within the 2 s it settles for, even when the database does not answer the look-up', async () => {
  // A half-open pooled connection: the look-up is answered by pg's read timeout (30 s), here after 6 s.
  const { shared } = drainedNode(() => new Promise((resolve) => setTimeout(() => resolve({ events: [], pending: 1 }), 6000)));
  await shared.start();
  const started = Date.now();
  await shared.stop(true);
  expect(Date.now() - started).toBeLessThan(2500);
}, 20_000);
