/**
 * The cell is ready once a worker has described its agents (cell-runtime.ts). Piscina marks the workers it
 * starts with the pool ready at once, before they have warmed (its \`startingUp\`: piscina/dist/index.js), and
 * gives a task to the first idle one; warming in turns (workers/worker/warm-up-turn.ts), that one could be the
 * last to warm, and the cell was ready only once every worker had (~0.35 s later with three, measured on a
 * replacement). The describe goes to the worker that warmed first instead.
 */
import { Piscina } from 'piscina';

type PiscinaLoadBalancer = NonNullable<NonNullable<ConstructorParameters<typeof Piscina>[0]>['loadBalancer']>;

/** Carried on the describe task under Piscina.queueOptionsSymbol (never cloned to the worker). */
interface DescribeOn {
  describeOn: number;
}

export function describeOn(workerId: number): { [key: symbol]: DescribeOn } {
  return { [Piscina.queueOptionsSymbol]: { describeOn: workerId } };
}

const available = (w: Parameters<PiscinaLoadBalancer>[1][number]) => w.currentUsage === 0 && !w.terminating && !w.destroyed;

/**
 * THREAD_REUSE=any: Piscina's own choice with one task per worker (its LeastBusyBalancer, not exported), the
 * first idle worker, except that one that has warmed goes before one still warming.
 */
export function firstIdle(warm: (workerId: number) => boolean): PiscinaLoadBalancer {
  return (_task, workers) => workers.find((w) => available(w) && warm(w.id)) ?? workers.find(available) ?? null;
}

/** `next`, except that a describe goes to the worker it names when that one is idle. */
export function describeFirstWarm(next: PiscinaLoadBalancer): PiscinaLoadBalancer {
  return (task, workers) => {
    const on = (task as unknown as Record<symbol, Partial<DescribeOn> | undefined>)[Piscina.queueOptionsSymbol]?.describeOn;
    if (on !== undefined) return workers.find((w) => w.id === on && available(w)) ?? workers.find(available) ?? null;
    return next(task, workers);
  };
}
