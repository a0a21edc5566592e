/**
 * Several real Atoll nodes for a test (scripts/cluster/nodes.ts does the processes): a PostgreSQL database of the
 * test's own (pg-scratch.ts: named with the run's prefix, swept by the pass's teardown if the file crashes) and
 * a fresh Redis key prefix on 127.0.0.1:6379 (its keys removed at the end, SCAN + DEL), nodes n1..nN with the
 * same AUTH_JWT_SECRET, dev login on (tests/helpers/client.ts logs in that way), and the test fixtures' agents.
 * Optionally the checker's audit of run rows (scripts/cluster/audit.ts), to judge caps and FIFO afterwards.
 */
import pg from 'pg';
import { installAudit, readTransitions } from '../../scripts/cluster/audit';
import { signToken } from '../../scripts/cluster/client';
import type { Transition } from '../../scripts/cluster/history';
import { startCluster, type Cluster, type ClusterOptions } from '../../scripts/cluster/nodes';
import { freshKeyPrefix, removeKeys, SHARED_REDIS_URL, startPrivateRedis, type PrivateRedis } from '../../scripts/cluster/redis';
import type { UserClient } from './client';
import { scratchDatabase, type ScratchDatabase } from './pg-scratch';
import { FIXTURE_AGENTS } from './server';

export const CLUSTER_SECRET = 'cluster-test-secret-cluster-test-secret';

export interface TestCluster extends Cluster {
  database: ScratchDatabase;
  /** null: the nodes run without REDIS_URL. */
  redis: { url: string; keyPrefix: string } | null;
  /** The cluster's own redis-server (`privateRedis: true`), to stop and start at will; null on the shared one. */
  redisServer: PrivateRedis | null;
  /** A token for `userId`, signed with the nodes' secret. */
  token(userId: string): string;
  /** One statement on the cluster's database (numbers come back as pg gives them). */
  query<R extends pg.QueryResultRow = any>(text: string, values?: unknown[]): Promise<R[]>;
  /** The audit of run rows so far (only with `audit: true`). */
  transitions(): Promise<Transition[]>;
  /** Which node (NODE_ID) holds a run now, from its row's lease; null if none does. */
  holderOf(runId: string): Promise<string | null>;
  /** The slot whose current node has that NODE_ID. */
  slotOf(nodeId: string): number;
  /** Stops every node, removes the Redis keys, drops the database. */
  destroy(): Promise<void>;
}

export interface TestClusterOptions {
  nodes?: number;
  /** Start the nodes with REDIS_URL (default true). */
  redis?: boolean;
  /** A redis-server of the cluster's own on a free port (to restart it) instead of the machine's. */
  privateRedis?: boolean;
  leaseMs?: number;
  env?: Record<string, string>;
  /** Install the audit trigger on the Run table once the first node has migrated. */
  audit?: boolean;
  startTimeoutMs?: number;
}

export async function startTestCluster(options: TestClusterOptions = {}): Promise<TestCluster> {
  const database = scratchDatabase();
  await database.create();
  const redisServer = options.redis !== false && options.privateRedis ? await startPrivateRedis() : null;
  const redis = options.redis === false ? null : { url: redisServer?.url ?? SHARED_REDIS_URL, keyPrefix: freshKeyPrefix() };
  const clusterOptions: ClusterOptions = {
    size: options.nodes ?? 3,
    databaseUrl: database.url,
    redis,
    jwtSecret: CLUSTER_SECRET,
    leaseMs: options.leaseMs ?? 2000,
    startTimeoutMs: options.startTimeoutMs ?? 90_000,
    env: {
      AUTH_DEV_LOGIN: '1',
      AGENTS_DIR: FIXTURE_AGENTS,
      // Tests drive many runs per user from one address; a test about caps sets its own.
      USER_MAX_CONCURRENT_RUNS: '100',
      ...(options.env ?? {}),
    },
  };
  let cluster: Cluster;
  try {
    cluster = await startCluster(clusterOptions);
  } catch (err) {
    if (redis) await removeKeys(redis.url, redis.keyPrefix).catch(() => undefined);
    await redisServer?.stop();
    await database.drop().catch(() => undefined);
    throw err;
  }
  if (options.audit) await installAudit(database.url);

  async function query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]> {
    const c = await database.connect();
    try {
      return (await c.query<R>(text, values)).rows;
    } finally {
      await c.end();
    }
  }

  return Object.assign(cluster, {
    database,
    redis,
    redisServer,
    token: (userId: string) => signToken(CLUSTER_SECRET, userId),
    query,
    transitions: () => readTransitions(database.url),
    async holderOf(runId: string) {
      const rows = await query<{ nodeId: string | null }>('SELECT n."nodeId" FROM "Run" r LEFT JOIN "Node" n ON n."id" = r."owner" WHERE r."id" = $1', [runId]);
      return rows[0]?.nodeId ?? null;
    },
    slotOf(nodeId: string) {
      const slot = cluster.slots.find((s) => cluster.node(s).nodeId === nodeId);
      if (slot === undefined) throw new Error(`no node ${nodeId} in the cluster (${cluster.slots.map((s) => cluster.node(s).nodeId).join(', ')})`);
      return slot;
    },
    async destroy() {
      await cluster.close();
      if (redis) await removeKeys(redis.url, redis.keyPrefix).catch(() => undefined);
      await redisServer?.stop();
      await database.drop();
    },
  });
}

/**
 * Makes a test client answer `resync_required` as a real one does (the chat page, the checker's clients): with
 * subscribe_run from the last seq it has of that run. A node that sees a hole in a run's seqs, or hears that
 * another node died, pauses the run for its sockets and asks for this (README "Wire contract").
 */
export function replayOnResync(client: UserClient): UserClient {
  client.socket.on('resync_required', (notice: { run_id: string }) => {
    const after = client.events.filter((e) => e.run_id === notice.run_id).reduce((n, e) => Math.max(n, e.seq), 0);
    client.ack('subscribe_run', { run_id: notice.run_id, after_seq: after }).catch(() => undefined);
  });
  return client;
}
