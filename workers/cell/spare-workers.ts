/**
 * More warm spares while workers keep ending (THREAD_REUSE=same_user). A run whose worker ends (recycled after a
 * leak, terminated at its deadline, crashed, out of memory) leaves its user without a worker: that user's next run
 * takes a fresh one, the cell's warm spare, and Piscina starts a replacement (~0.3-0.5 s of a busy core). With one
 * spare, two such ends in a cell within that time made a healthy run wait for a thread start, and the runs queued
 * behind it in the front (measured with 20% misbehaving runs: README, "Performance"). So after each end the cell
 * keeps up to CHURN_SPARES more fresh workers than WARM_SPARE_THREADS for a while. And WARM_SPARE_THREADS means
 * fresh workers: Piscina keeps a number of workers, owned or not, so a spare a new user took was not replaced, and
 * the next new user waited for a thread start; now one starts as soon as a user takes the last spare.
 *
 * Piscina starts a worker only to keep `minThreads` or for a task no worker can take. The cell asks for one with
 * a spare task that no worker ever takes (the balancer refuses it): Piscina starts a worker for it, below
 * `maxThreads`, and the cell withdraws the task at once, before any worker could be offered it. Above
 * `minThreads`, a worker idle for Piscina's idleTimeout retires, so the extra spares go once the churn stops.
 * Piscina retires whichever idle worker's timeout comes first, a spare or a user's: a cell at rest can be left with
 * no spare until the next new user or worker end (topping up on such a retirement would start and retire a worker
 * every idleTimeout, for ever).
 */
import { Piscina } from 'piscina';

type PiscinaLoadBalancer = NonNullable<NonNullable<ConstructorParameters<typeof Piscina>[0]>['loadBalancer']>;

/** Fresh workers a cell keeps beyond WARM_SPARE_THREADS while its workers keep ending. */
export const CHURN_SPARES = 2;

/** Carried on a spare task under Piscina.queueOptionsSymbol (never cloned to a worker: none ever gets it). */
interface SpareRoute {
  spare: true;
}

/** `next`, except that a spare task goes to no worker. */
export function spareTasks(next: PiscinaLoadBalancer): PiscinaLoadBalancer {
  return (task, workers) => ((task as unknown as Record<symbol, Partial<SpareRoute> | undefined>)[Piscina.queueOptionsSymbol]?.spare ? null : next(task, workers));
}

/** How long a worker's end keeps the churn spares wanted: Piscina's idleTimeout (cell-runtime.ts), after which idle extras retire. */
export const CHURN_MEMORY_MS = 30_000;

export function createSpareWorkers(deps: {
  pool: Pick<Piscina, 'run' | 'queueSize' | 'threads'>;
  maxWorkers: number;
  /** Workers alive or starting that no user has taken yet. */
  fresh: () => number;
  /** WARM_SPARE_THREADS. */
  warmSpares: number;
  now?: () => number;
}) {
  const now = deps.now ?? Date.now;
  let churnUntil = 0;

  /** Starts fresh workers up to the target, within the pool's maximum. */
  function topUp(): void {
    // Queued runs already make Piscina start workers; a spare task would queue behind them instead.
    if (deps.pool.queueSize > 0) return;
    const target = deps.warmSpares + (now() < churnUntil ? CHURN_SPARES : 0);
    for (let fresh = deps.fresh(); fresh < target && deps.pool.threads.length < deps.maxWorkers; fresh++) {
      const withdraw = new AbortController();
      const spare: SpareRoute = { spare: true };
      // run() places or queues the task synchronously: its worker is started before abort() withdraws it.
      deps.pool.run({ kind: 'spare', [Piscina.queueOptionsSymbol]: spare }, { signal: withdraw.signal }).catch(() => undefined);
      withdraw.abort();
    }
  }

  return {
    /** A run's worker ended with it: up to CHURN_SPARES more fresh workers, for CHURN_MEMORY_MS. */
    workerEnded(): void {
      churnUntil = now() + CHURN_MEMORY_MS;
      topUp();
    },
    /** A user took a fresh worker: another one starts if that was a spare (Piscina counts workers, not fresh ones). */
    freshTaken(): void {
      topUp();
    },
  };
}
