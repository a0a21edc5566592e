/**
 * The spare-worker arithmetic of workers/cell/spare-workers.ts against a stand-in pool (the real pool and its
 * threads: tests/spare-workers.test.ts): how many workers a cell asks Piscina for, and for how long the churn counts.
 */
import { Piscina } from 'piscina';
import { CHURN_MEMORY_MS, CHURN_SPARES, createSpareWorkers, spareTasks } from '../../workers/cell/spare-workers';

/** A pool whose run() "starts a worker" the way Piscina does for a task no worker takes, and records the task. */
function fakePool(threads: number, queued = 0) {
  const pool = {
    threads: new Array(threads).fill({}),
    queueSize: queued,
    asked: 0,
    withdrawn: 0,
    run(_task: unknown, opts: { signal: AbortSignal }) {
      pool.asked++;
      pool.threads.push({});
      opts.signal.addEventListener('abort', () => pool.withdrawn++);
      return new Promise(() => undefined);
    },
  };
  return pool;
}

function setup(opts: { threads: number; fresh: number; queued?: number; max?: number }) {
  let t = 0;
  const pool = fakePool(opts.threads, opts.queued);
  let fresh = opts.fresh;
  const spares = createSpareWorkers({
    pool: pool as never,
    maxWorkers: opts.max ?? 9,
    warmSpares: 1,
    // Every worker the cell asks for is fresh until a user takes it.
    fresh: () => fresh + pool.asked,
    now: () => t,
  });
  return { pool, spares, take: () => fresh--, advance: (ms: number) => (t += ms) };
}

test('a user takes the last spare: one more; a worker ends: up to CHURN_SPARES more; every request withdrawn at once', () => {
  const c = setup({ threads: 3, fresh: 1 });
  c.spares.freshTaken();
  expect(c.pool.asked).toBe(0);
  c.take();
  c.spares.freshTaken();
  expect(c.pool.asked).toBe(1);
  c.spares.workerEnded();
  expect(c.pool.asked).toBe(1 + CHURN_SPARES);
  expect(c.pool.withdrawn).toBe(c.pool.asked);
});

test('the churn counts for CHURN_MEMORY_MS: then a taken spare is replaced only up to WARM_SPARE_THREADS', () => {
  const c = setup({ threads: 3, fresh: 0 });
  c.spares.workerEnded();
  expect(c.pool.asked).toBe(1 + CHURN_SPARES);
  c.take();
  c.advance(CHURN_MEMORY_MS - 1);
  c.spares.freshTaken();
  expect(c.pool.asked).toBe(2 + CHURN_SPARES);
  c.take();
  c.take();
  c.advance(1);
  // Fresh: four asked for, three taken: one, the resting target.
  c.spares.freshTaken();
  expect(c.pool.asked).toBe(2 + CHURN_SPARES);
});

test("never beyond the pool's maximum, and never beside queued runs (Piscina starts workers for those)", () => {
  const full = setup({ threads: 8, fresh: 0, max: 9 });
  full.spares.workerEnded();
  expect(full.pool.asked).toBe(1);
  const busy = setup({ threads: 3, fresh: 0, queued: 1 });
  busy.spares.workerEnded();
  expect(busy.pool.asked).toBe(0);
});

test('the balancer gives a spare task to no worker, and any other task to the balancer behind it', () => {
  const worker = { id: 1, currentUsage: 0, terminating: false, destroyed: false } as never;
  const balancer = spareTasks(() => worker);
  expect(balancer({ [Piscina.queueOptionsSymbol]: { spare: true } } as never, [worker])).toBeNull();
  expect(balancer({ [Piscina.queueOptionsSymbol]: { userId: 'u' } } as never, [worker])).toBe(worker);
  expect(balancer({} as never, [worker])).toBe(worker);
});
