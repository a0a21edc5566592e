/**
 * Several Atoll nodes on this machine, as the cluster contract runs them: the same command with the same
 * DATABASE_URL (one fresh PostgreSQL database), AUTH_JWT_SECRET (spawn.ts's) and REDIS_URL (a fresh key prefix),
 * each with its NODE_ID. A node can be SIGKILLed and started again under the same NODE_ID. Stopping the cluster
 * stops every node, then drops the database and removes the prefix's Redis keys.
 */
import type { BenchDatabase } from './databases.js';
import { atollEnv } from './atoll-server.js';
import { ATOLL_ENTRY } from './paths.js';
import type { RedisScratch, RedisScratches } from './redis-scratch.js';
import { startServer, type Spawned } from './spawn.js';

export interface ClusterNode {
  readonly index: number;
  readonly nodeId: string;
  /** The node's current life (a new one after restart()). */
  readonly server: Spawned;
  readonly url: string;
  readonly alive: boolean;
  /** SIGKILL of the node (front and cells); returns Date.now() just before the signal. */
  kill(): number;
  /** Starts the node again under the same NODE_ID and environment; resolves once it listens. */
  restart(): Promise<void>;
}

export interface Cluster {
  nodes: ClusterNode[];
  /** Node starts that failed and were tried again (a starved machine: PostgreSQL or Redis too slow to answer). */
  startFailures: string[];
  /** The live nodes' URLs, in node order. */
  urls(): string[];
  leaseMs: number;
  stop(): Promise<void>;
}

export interface ClusterShape {
  nodes: number;
  cells: number;
  threads: number;
  leaseMs: number;
  /** More environment for every node (ENABLE_CHAOS_AGENTS, ...). */
  extra?: Record<string, string>;
  /** Node flags of every front (`--cpu-prof`, ...). */
  nodeArgs?: string[];
}

/** `redis` null: the same nodes without REDIS_URL (only one may then use the database: the single-node mode). */
export async function startCluster(db: BenchDatabase, redis: RedisScratches | null, shape: ClusterShape, name: string): Promise<Cluster> {
  const scratch = await db.scratch();
  let keys: RedisScratch | null = null;
  try {
    keys = redis ? await redis.scratch() : null;
  } catch (err) {
    await scratch.drop();
    throw err;
  }
  const nodes: ClusterNode[] = [];
  const startFailures: string[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((n) => n.server.stop()));
    await scratch.drop();
    await keys?.drop();
  };
  // Started together, as nodes of a deployment are (they migrate the new database under one lock).
  const started = await Promise.allSettled(
    Array.from({ length: shape.nodes }, (_, i) =>
      startNode(i, `${name}-${i + 1}`, atollEnv(shape.cells, shape.threads, { ...scratch.env, ...keys?.env, NODE_LEASE_MS: String(shape.leaseMs), ...shape.extra }), startFailures, shape.nodeArgs ?? []),
    ),
  );
  for (const s of started) if (s.status === 'fulfilled') nodes.push(s.value);
  const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await stop();
    throw failed.reason;
  }
  return { nodes, startFailures, urls: () => nodes.filter((n) => n.alive).map((n) => n.url), leaseMs: shape.leaseMs, stop };
}

/** A node start is tried this often: on a machine other work starves, a start-up query can time out. */
const START_ATTEMPTS = 2;

async function startNode(index: number, nodeId: string, env: Record<string, string>, failures: string[], nodeArgs: string[]): Promise<ClusterNode> {
  const withId = { ...env, NODE_ID: nodeId };
  const start = async (): Promise<Spawned> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await startServer(ATOLL_ENTRY, withId, [], { nodeArgs });
      } catch (err) {
        if (attempt >= START_ATTEMPTS) throw err;
        failures.push(`${nodeId}: ${String((err as Error).message).split('\n').filter(Boolean).slice(-1)[0]}`);
      }
    }
  };
  let server = await start();
  let alive = true;
  return {
    index,
    nodeId,
    get server() {
      return server;
    },
    get url() {
      return server.url;
    },
    get alive() {
      return alive;
    },
    kill() {
      const at = Date.now();
      server.kill();
      alive = false;
      return at;
    },
    async restart() {
      await server.stop();
      server = await start();
      alive = true;
    },
  };
}
