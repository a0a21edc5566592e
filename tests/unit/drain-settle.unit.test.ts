/**
 * A drained node's last give-back (deregister: its runs back to the queue, those whose stop was asked ended) whose
 * COMMIT's answer was lost keeps its endings in doubt; the sweeper, which settles doubts, stopped before it. The node
 * settles them as it leaves, while its bus is up: the ending was never published (helper-83).
 */
import type { RunEventEnvelope } from '../../protocol/events';
import { createSharedRuns } from '../../server/runs/shared-runs';

test('a deregister whose COMMIT answer was lost: its terminal event is published once the database says it committed', async () => {
  const terminal = { run_id: 'r1', type: 'agent_completed', seq: 3, payload: { status: 'cancelled', error: { code: 'CANCELLED' } } } as unknown as RunEventEnvelope;
  let committedInDoubt: RunEventEnvelope[] = [];
  const published: string[] = [];
  const counter = { inc: () => undefined };
  const cluster = {
    register: async () => ({ lease: 'L1', replaced: 0 }),
    renew: async () => ({ alive: true, stopsAsked: [] }),
    census: async () => ({ queued: 0, nodes: 1 }),
    takeOverExpired: async () => null,
    // The give-back committed, its answer lost: the store keeps the ending in doubt, as announcing() does.
    deregister: async () => {
      committedInDoubt = [terminal];
      throw Object.assign(new Error('Connection terminated unexpectedly'), { code: 'DB_UNAVAILABLE' });
    },
    settleDoubts: async () => {
      const events = committedInDoubt;
      committedInDoubt = [];
      return { events, pending: 0 };
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
  await shared.start();
  await shared.stop(true);
  expect(published).toEqual(['r1:agent_completed']);
});
