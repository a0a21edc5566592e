/**
 * THREAD_REUSE=same_user: a worker serves one user for its whole life. Module-level state of an
 * agent or of its dependencies survives any freeze and any check, so the only wall between two users is a
 * worker that never serves both. This load balancer sends a run to an idle worker that already serves its
 * user, else to a worker that has served nobody yet (a warm spare, a replacement). Failing both, the run
 * waits for a worker that is starting, or for one Piscina starts for it while the pool is below its
 * maximum (idle workers beyond the minimum retire after idleTimeout). Only a full pool gives the run to the
 * idle worker of another user that was used least recently: that worker refuses the run before any agent
 * code runs (worker-runtime.ts) and is retired, and the cell dispatches the run again. Retiring a worker
 * whenever nothing fresh is ready would retire every idle worker at once under load (measured: 7 s stalls).
 */
import { Piscina } from 'piscina';

type PiscinaLoadBalancer = NonNullable<NonNullable<ConstructorParameters<typeof Piscina>[0]>['loadBalancer']>;

/** Carried on the Piscina task under Piscina.queueOptionsSymbol: visible to the balancer, never cloned to the worker. */
export interface RouteOptions {
  userId: string;
}

type Worker = Parameters<PiscinaLoadBalancer>[1][number];

export function routeOptions(userId: string): { [key: symbol]: RouteOptions } {
  return { [Piscina.queueOptionsSymbol]: { userId } };
}

export function createUserAffinity(pool: {
  /** Workers alive or starting. */
  workers(): number;
  /** Workers that finished starting (Piscina's workerCreate); the others are still starting. */
  ready(): number;
  /** Tasks waiting in Piscina's queue. */
  queued(): number;
  maxWorkers: number;
  /** The worker has warmed: a run given to it starts now, not after the worker's warm-up. */
  warm: (workerId: number) => boolean;
  /** A user took a fresh worker (called from inside Piscina's distribution: start no task synchronously). */
  onFreshTaken?: () => void;
}) {
  /** The user each worker serves (by Piscina's worker id, its threadId), and when it last got a run. */
  const owners = new Map<number, { userId: string; lastUsed: number }>();
  let clock = 0;

  const balancer: PiscinaLoadBalancer = (task, workers) => {
    const route = (task as unknown as Record<symbol, RouteOptions | null>)[Piscina.queueOptionsSymbol];
    const idle = workers.filter((w) => w.currentUsage === 0 && !w.terminating && !w.destroyed);
    // Tasks without a user (the cell's describe) go to any idle worker and make it nobody's.
    if (!route) return idle[0] ?? null;
    let fresh: Worker | null = null;
    let cold: Worker | null = null;
    let other: Worker | null = null;
    for (const w of idle) {
      const owner = owners.get(w.id);
      if (owner?.userId === route.userId) {
        owner.lastUsed = ++clock;
        return w;
      }
      if (!owner) {
        // A fresh worker that has warmed first, one still warming (a cell's first seconds) only if none has.
        if (fresh) continue;
        if (pool.warm(w.id)) fresh = w;
        else cold ??= w;
      } else if (!other || owner.lastUsed < owners.get(other.id)!.lastUsed) other = w;
    }
    fresh ??= cold;
    if (fresh) {
      owners.set(fresh.id, { userId: route.userId, lastUsed: ++clock });
      pool.onFreshTaken?.();
      return fresh;
    }
    const starting = pool.workers() - pool.ready();
    if (starting > pool.queued() || pool.workers() < pool.maxWorkers) return null;
    // `other` keeps its owner: it will refuse this run and retire.
    return other;
  };

  return {
    balancer,
    /** Of these workers (alive or starting), how many no user has taken yet. */
    fresh(workerIds: readonly number[]): number {
      return workerIds.filter((id) => !owners.has(id)).length;
    },
    /** Piscina's workerDestroy: forget a worker that is gone. */
    forget(workerId: number) {
      owners.delete(workerId);
    },
  };
}
