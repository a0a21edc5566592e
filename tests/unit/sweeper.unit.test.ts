/**
 * The sweeper on a fake store: each sweep first publishes the events the store found committed after their
 * transaction's answer was lost (ClusterStore.settleDoubts), then takes over expired leases; a failed look-up is
 * tried again at the next sweep, and the takeovers still happen.
 */
import type { RunEventEnvelope } from '../../protocol/events';
import { createSweeper } from '../../server/cluster/sweeper';
import type { Logger } from '../../server/logger';

const log = { info: () => undefined, warn: () => undefined, error: () => undefined } as unknown as Logger;
const event = (runId: string, type: string) => ({ run_id: runId, type, seq: 2, payload: { status: 'cancelled' } }) as unknown as RunEventEnvelope;

test("a sweep publishes what settleDoubts found committed, says so, and then takes over as before", async () => {
  const published: string[] = [];
  const settled: string[][] = [];
  const answers: (() => Promise<{ events: RunEventEnvelope[]; pending: number }>)[] = [
    async () => {
      throw new Error('the database cannot be reached right now');
    },
    async () => ({ events: [event('r1', 'agent_completed'), event('r2', 'run_restarted')], pending: 0 }),
    async () => ({ events: [], pending: 0 }),
  ];
  let takeovers = 0;
  // Each sweep: one takeover, then none left.
  const sweeper = createSweeper({
    store: {
      settleDoubts: () => answers.shift()!(),
      takeOverExpired: async () => (takeovers++ % 2 === 0 ? { nodeId: 'dead', events: [event('r3', 'run_restarted')], requeued: 1 } : null),
    },
    rule: () => ({ kind: 'requeue' }),
    bus: { publish: (e) => void published.push(`${e.run_id}:${e.type}`) },
    log,
    everyMs: 1000,
    onTakenOver: () => undefined,
    onSettled: (events) => void settled.push(events.map((e) => e.run_id)),
  });
  await sweeper.sweep(); // the look-up fails: nothing settled, the takeover goes on
  expect(published).toEqual(['r3:run_restarted']);
  await sweeper.sweep();
  expect(published).toEqual(['r3:run_restarted', 'r1:agent_completed', 'r2:run_restarted', 'r3:run_restarted']);
  expect(settled).toEqual([['r1', 'r2']]);
  await sweeper.sweep();
  expect(settled).toEqual([['r1', 'r2']]);
  expect(published).toHaveLength(5);
});
