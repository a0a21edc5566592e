/**
 * The store on PostgreSQL: migrations under Prisma's advisory lock (after waiting for the server, creating the
 * database if it has none of that name), then the front's connections: a pool of DB_POOL_SIZE for Prisma's reads
 * and the worker gate's statements, and one connection for the run path's group-committed writes. That is
 * DB_POOL_SIZE + 1 connections per node; cells and workers open none.
 *
 * While the database is unreachable, reads and requests fail with DB_UNAVAILABLE (retryable) and acknowledged
 * writes wait for it (group-commit.ts); the pools reconnect by themselves.
 */
import type { StoreBackend, StoreConnection, StoreOptions } from '../backend.js';
import type { PostgresqlTarget } from '../database-target.js';
import { migrationsFolder, type MigrationReport } from '../migrations.js';
import { createPrismaRunStore } from '../prisma-run-store.js';
import type { RunStore } from '../store.js';
import { applyMigrations } from './apply-migrations.js';
import { connectWithRetry } from './connect-with-retry.js';
import { createPgClusterStore } from './cluster-store.js';
import { lockPostgresql } from './node-lock.js';
import { createPool, poolConfig, writePoolConfig } from './pools.js';
import { openReadClient, prismaClientOver } from './prisma-client.js';
import { createPgRunWrites } from './run-writes.js';
import { unavailableError } from '../db-unavailable.js';
import { asUnavailable, isUnavailable } from './unavailable.js';

/** Connections of the shared queue's pool (claims, takeovers, accepts of several nodes); opened on first use. */
const CLUSTER_POOL_SIZE = 2;

/** How long closing waits for writes the database cannot take (it is unreachable). */
const CLOSE_GRACE_MS = 5_000;

export function createPostgresqlBackend(target: PostgresqlTarget, options: StoreOptions): StoreBackend {
  return {
    provider: 'postgres',
    prismaClient: prismaClientOver,

    async migrate(): Promise<MigrationReport> {
      const client = await connectWithRetry(target, options);
      try {
        return await applyMigrations(client, migrationsFolder('postgresql'));
      } finally {
        await client.end().catch(() => undefined);
      }
    },

    async connect(): Promise<StoreConnection> {
      const readPool = createPool(poolConfig(target.url, options.poolSize), options.log);
      const writePool = createPool(writePoolConfig(target.url, 1), options.log);
      const reads = openReadClient(readPool);
      const writes = createPgRunWrites(writePool, options.log, undefined, readPool);
      const store = guarded(createPrismaRunStore(reads.prisma, writes), () => writes.commits.undoPending);
      // The shared queue's transactions (several nodes): a pool of their own, so a claim never waits behind reads.
      // The queue's statements are keyed lookups too: set up as the write connection is.
      const clusterPool = createPool(writePoolConfig(target.url, CLUSTER_POOL_SIZE), options.log);
      const leasePool = createPool(writePoolConfig(target.url, 1), options.log);
      const cluster = createPgClusterStore(clusterPool, leasePool, options.log);
      let clusterUsed = false;
      let unlock: (() => Promise<void>) | null = null;
      return {
        store,
        async lockNode(mode) {
          unlock = await lockPostgresql(target, mode, options.log, options.startupWaitMs);
        },
        // Opened on first use: a single node never does.
        get cluster() {
          clusterUsed = true;
          return cluster;
        },
        gateConnection: reads.connection,
        isUnavailable,
        // Reads, the write connection, the node lock's, and the shared queue's pool and the lease's connection
        // when several nodes use them.
        get connections() {
          return options.poolSize + 1 + (unlock ? 1 : 0) + (clusterUsed ? CLUSTER_POOL_SIZE + 1 : 0);
        },
        async close(): Promise<void> {
          await writes.commits.close(CLOSE_GRACE_MS);
          await reads.prisma.$disconnect().catch(() => undefined);
          await Promise.all([readPool.end(), writePool.end(), clusterPool.end(), leasePool.end()]).catch(() => undefined);
          await unlock?.();
        },
      };
    },
  };
}

/**
 * Every store call's failure to reach the database becomes DB_UNAVAILABLE. Reads wait for nothing: while a
 * request whose COMMIT was lost is not yet undone, the reads that could find it (idempotency) fail instead.
 */
function guarded(store: RunStore, undoPending: () => boolean): RunStore {
  const wrapped = {} as Record<string, unknown>;
  for (const key of Object.keys(store) as (keyof RunStore)[]) {
    const fn = store[key] as (...args: unknown[]) => Promise<unknown>;
    wrapped[key] = (...args: unknown[]) => {
      if (key === 'findRunByCorrelation' && undoPending()) return Promise.reject(unavailableError());
      return fn(...args).catch(asUnavailable);
    };
  }
  return wrapped as unknown as RunStore;
}
