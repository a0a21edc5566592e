/**
 * The node lease on a fake clock and a fake store: it is lost (its runs abandoned) once 80% of NODE_LEASE_MS
 * passed without a renewal, also while a renewal is still waiting for its answer.
 */
import { createNodeLease } from '../../server/cluster/node-lease';
import type { Logger } from '../../server/logger';

const log = { info: () => undefined, warn: () => undefined, error: () => undefined } as unknown as Logger;

function rig(renew: () => Promise<{ alive: boolean; stopsAsked: string[] }>) {
  let clock = 0;
  const lost: number[] = [];
  const lease = createNodeLease({
    store: { register: async () => ({ lease: 'L1', replaced: 0 }), renew, deregister: async () => [] },
    stopped: () => {
      throw new Error('no run is given back here');
    },
    onStoppedEnded: () => undefined,
    nodeId: 'n1',
    leaseMs: 1000,
    log,
    onLost: () => lost.push(clock),
    onStopsAsked: () => undefined,
    onGained: () => undefined,
    now: () => clock,
  });
  /** Moves the clock and the timers together, `ms` at a time in steps of the renewal period. */
  const pass = async (ms: number) => {
    for (let t = 0; t < ms; t += 200) {
      clock += 200;
      await jest.advanceTimersByTimeAsync(200);
    }
  };
  return { lease, lost, pass };
}

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

test('renewals that answer keep the lease', async () => {
  const { lease, lost, pass } = rig(async () => ({ alive: true, stopsAsked: [] }));
  await lease.start();
  await pass(5000);
  expect(lost).toEqual([]);
  expect(lease.current).toBe('L1');
  await lease.stop(false);
});

test('a renewal that never answers: the lease is lost within the lease, not when the renewal gives up', async () => {
  const { lease, lost, pass } = rig(() => new Promise(() => undefined));
  await lease.start();
  await pass(3000);
  expect(lost).toHaveLength(1);
  // Before the lease could expire in the database (it was set at most 1000 ms after registration).
  expect(lost[0]).toBeLessThanOrEqual(1000);
  await lease.stop(false);
});
