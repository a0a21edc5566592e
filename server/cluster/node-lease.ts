/**
 * This node's lease in the database: registered at start, renewed every NODE_LEASE_MS / 5 in database time. A
 * node whose lease expired is dead to the others: the first of them to sweep takes its runs over
 * (sweeper.ts). So a node must stop acting on its runs before that can happen: when it could not renew for
 * 80% of the lease by its own clock (measured from when it sent its last successful renewal, which is
 * before the database set the expiry), or when a renewal finds the lease expired (it was paused, its database
 * was away), it loses the lease: every run it holds is abandoned without a word (the takeover speaks for
 * them), and a new lease is registered. The database refuses the late writes of the old one (FencedError).
 */
import type { Logger } from '../logger.js';
import type { RunEventEnvelope } from '../../protocol/events.js';
import type { ClusterStore, StoppedEnding } from './cluster-store.js';

export function createNodeLease(deps: {
  store: Pick<ClusterStore, 'register' | 'renew' | 'deregister'>;
  nodeId: string;
  leaseMs: number;
  log: Logger;
  /** The lease was lost: abandon every run it held (they are, or will be, taken over). */
  onLost: () => void;
  /** Runs it holds whose stop was asked through another node (the message may have been lost). */
  onStopsAsked: (runIds: string[]) => void;
  /** A lease was (re)gained: runs may be claimed. */
  onGained: () => void;
  /** How a run whose stop was asked ends when the lease ends with it still held (deregister). */
  stopped: StoppedEnding;
  /** Such runs ended as the lease ended: their terminal events, to publish. */
  onStoppedEnded: (events: RunEventEnvelope[]) => void;
  now?: () => number;
}) {
  const { store, nodeId, leaseMs, log } = deps;
  const now = deps.now ?? (() => performance.now());
  const renewEveryMs = Math.max(100, Math.floor(leaseMs / 5));
  /** Stop acting on the lease this long before it can expire (by this node's clock). */
  const marginMs = Math.floor(leaseMs / 5);
  let lease: string | null = null;
  let validUntil = 0;
  let timer: NodeJS.Timeout | null = null;
  let busy = false;
  let stopped = false;

  async function register(): Promise<void> {
    const sentAt = now();
    const { lease: id, replaced } = await store.register(nodeId, leaseMs);
    if (replaced) log.warn({ node: nodeId }, 'an earlier life of this NODE_ID still held a lease (a restart within NODE_LEASE_MS, or two nodes with one NODE_ID): its runs are taken over');
    lease = id;
    validUntil = sentAt + leaseMs;
    log.info({ node: nodeId, lease: id, lease_ms: leaseMs }, 'node lease registered');
    deps.onGained();
  }

  function lose(why: string): void {
    if (lease === null) return;
    log.error({ node: nodeId, lease }, `node lease lost (${why}): abandoning this node's runs; they run again elsewhere`);
    lease = null;
    deps.onLost();
  }

  async function tick(): Promise<void> {
    if (stopped) return;
    // Checked before waiting for a renewal still under way: one that never answers (a half-open connection waits
    // for the query timeout, longer than the lease) must not keep this node acting on runs taken over elsewhere.
    if (lease !== null && now() > validUntil - marginMs) lose('no renewal for 80% of NODE_LEASE_MS');
    if (busy) return;
    busy = true;
    try {
      if (lease === null) {
        await register();
        return;
      }
      const sentAt = now();
      const held = lease;
      const { alive, stopsAsked } = await store.renew(held, leaseMs);
      if (lease !== held) return;
      if (!alive) return lose('it had expired');
      validUntil = sentAt + leaseMs;
      if (stopsAsked.length) deps.onStopsAsked(stopsAsked);
    } catch (err) {
      log.warn({ node: nodeId, err: (err as Error).message }, 'could not renew the node lease');
    } finally {
      busy = false;
    }
  }

  return {
    /** The lease id while this node holds one; null while it has none (nothing may be claimed or written). */
    get current(): string | null {
      if (lease !== null && now() > validUntil - marginMs) lose('no renewal for 80% of NODE_LEASE_MS');
      return lease;
    },
    async start(): Promise<void> {
      await register();
      timer = setInterval(() => void tick(), renewEveryMs);
      timer.unref();
    },
    /** Stops renewing; with `release`, ends the lease at once (a drained node) rather than letting it expire. */
    async stop(release: boolean): Promise<void> {
      stopped = true;
      if (timer) clearInterval(timer);
      timer = null;
      const held = lease;
      lease = null;
      if (release && held) {
        await store.deregister(held, deps.stopped).then(deps.onStoppedEnded, (err) => log.warn({ err: (err as Error).message }, 'could not end the node lease; it expires by itself'));
      }
    },
  };
}

export type NodeLease = ReturnType<typeof createNodeLease>;
