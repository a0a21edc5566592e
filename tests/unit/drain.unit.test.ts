/**
 * The drain waits for finished runs' terminal writes only so long: a database that cannot take them (SQLite's disk
 * full, PostgreSQL unreachable) has them kept and retried, and the stop must still reach the database's close, which
 * gives up on them (disk-full-shutdown.test.ts: before, the front never exited).
 */
import { createDrain, SETTLE_AT_SHUTDOWN_MS } from '../../server/runs/drain';

function drainWith(runs: { phase: string; settled: Promise<void> }[]) {
  return createDrain({
    live: { inFlight: () => [], values: () => runs } as never,
    scheduler: { stop: () => undefined, dropWaiting: () => [] } as never,
    deadlines: { stopAtShutdown: async () => undefined, stop: () => undefined, clear: () => undefined } as never,
  });
}

test('a finished run whose terminal write never commits holds the drain SETTLE_AT_SHUTDOWN_MS, not forever', async () => {
  const drain = drainWith([{ phase: 'finished', settled: new Promise<void>(() => undefined) }]);
  const started = Date.now();
  const done = await Promise.race([drain.drain(0).then(() => 'drained'), new Promise((r) => setTimeout(() => r('held'), SETTLE_AT_SHUTDOWN_MS + 5000))]);
  expect(done).toBe('drained');
  expect(Date.now() - started).toBeGreaterThanOrEqual(SETTLE_AT_SHUTDOWN_MS - 50);
}, 30_000);

test('terminal writes that commit end the wait at once', async () => {
  let settle!: () => void;
  const drain = drainWith([{ phase: 'finished', settled: new Promise<void>((r) => (settle = r)) }]);
  setTimeout(() => settle(), 50);
  const started = Date.now();
  await drain.drain(0);
  expect(Date.now() - started).toBeLessThan(SETTLE_AT_SHUTDOWN_MS - 1000);
}, 30_000);
