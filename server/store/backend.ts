/**
 * What the front needs from a database, whichever it is: one implementation per folder under server/store/
 * (sqlite/ today), picked by openStore (open-store.ts) from the database target's kind. Nothing outside its
 * folder loads a database driver (tests/architecture.test.ts checks it).
 *
 * Two steps, because the migrations must have run before the front's connections can prepare their
 * statements, and `npm run db:migrate` migrates without opening anything else.
 */
import type { SqlDriverAdapter, SqlDriverAdapterFactory } from '@prisma/driver-adapter-utils';
import type { Db } from '../../prisma/client-type.js';
import type { CellConfig } from '../../protocol/cell-messages.js';
import type { ClusterStore } from '../cluster/cluster-store.js';
import type { MigrationReport } from './migrations.js';
import type { NodeMode } from './node-lock.js';
import type { Logger } from '../logger.js';
import type { RunStore } from './store.js';

export interface StoreBackend {
  /** Prisma's provider name for this database: the workers' Prisma clients and the gate's learning compile for it. */
  readonly provider: CellConfig['dbProvider'];
  /**
   * This database's generated Prisma client over any driver adapter of its provider: the gate learns the
   * workers' statements through one whose adapter records them (worker-query-gate.ts).
   */
  prismaClient(adapter: SqlDriverAdapterFactory): Db;
  /** Applies the pending migrations (safe at every start); throws a MigrationError when one failed. */
  migrate(): Promise<MigrationReport>;
  /** Opens the front's connections; after migrate(). */
  connect(): Promise<StoreConnection>;
}

export interface StoreConnection {
  readonly store: RunStore;
  /** The connection where the worker query gate executes the statements it allows (server/store/worker-query-gate.ts). */
  gateConnection(): Promise<SqlDriverAdapter>;
  /** Does this error mean the database cannot be reached right now (rather than a failing statement)? */
  isUnavailable(err: unknown): boolean;
  /**
   * Takes the node lock (node-lock.ts): a single node holds the database alone, nodes of a cluster share it;
   * throws NodeLockError when another node holds it in a way this one cannot share. Released by close().
   */
  lockNode(mode: NodeMode): Promise<void>;
  /** What several nodes share through the database (server/cluster/cluster-store.ts); null: one node only (SQLite). */
  readonly cluster: ClusterStore | null;
  /** How many database connections the front holds (the atoll_db_connections gauge). */
  readonly connections: number;
  /** Commits what is still pending, then closes every connection. */
  close(): Promise<void>;
}

/** Settings of the front's connections that only some databases have; each implementation takes what it knows. */
export interface StoreOptions {
  /** DB_SYNCHRONOUS: SQLite's synchronous mode of the write connection (full also survives a power loss). */
  synchronous: 'normal' | 'full';
  /** DB_POOL_SIZE: PostgreSQL's read connections of the front (reads and the gate); writes use one more. */
  poolSize: number;
  /** DB_STARTUP_WAIT_MS: how long migrate() waits for an unreachable database, saying so, before it gives up. */
  startupWaitMs: number;
  /** Where "waiting for the database" and "the database is back" go. */
  log: Pick<Logger, 'info' | 'warn'>;
}
