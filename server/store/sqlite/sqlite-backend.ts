/**
 * The store on SQLite: migrations on the file (switched to WAL), then the front's two connections, Prisma's
 * (reads, and the workers' statements the gate allows) and the write connection (run-writes.ts, group commit).
 */
import fs from 'node:fs';
import type { StoreBackend, StoreConnection, StoreOptions } from '../backend.js';
import type { SqliteTarget } from '../database-target.js';
import { migrationsFolder, type MigrationReport } from '../migrations.js';
import { applyMigrations } from './apply-migrations.js';
import { openFrontDatabase, prismaClientOver } from './prisma-client.js';
import { createPrismaRunStore } from '../prisma-run-store.js';
import { lockSqlite } from './node-lock.js';
import { createRunWrites } from './run-writes.js';
import { ensureWritableFolder } from './writable-folder.js';

export function createSqliteBackend(target: SqliteTarget, options: StoreOptions): StoreBackend {
  return {
    provider: 'sqlite',
    prismaClient: prismaClientOver,

    async migrate(): Promise<MigrationReport> {
      // Migrations are the first to touch the file: a folder Atoll cannot write is refused here, saying why.
      ensureWritableFolder(target.file);
      return applyMigrations(target.file, migrationsFolder('sqlite'));
    },

    async connect(): Promise<StoreConnection> {
      // The database is the front's alone (cells reach it through the front): no other OS user may open it.
      for (const f of [target.file, `${target.file}-wal`, `${target.file}-shm`]) if (fs.existsSync(f)) fs.chmodSync(f, 0o600);
      const database = openFrontDatabase(target.file);
      const writes = createRunWrites(target.file, {
        busyTimeoutMs: 10_000,
        synchronous: options.synchronous,
        onCheckpointFailure: (err) => options.log.warn({ err }, 'the WAL checkpoint thread failed; SQLite checkpoints on the write connection again'),
        log: options.log,
      });
      const store = createPrismaRunStore(database.prisma, writes);
      let unlock: (() => Promise<void>) | null = null;
      return {
        // Reads still work while the disk is full: the database is reported failing (/readyz) while the writes of
        // runs already acknowledged wait for it.
        store: {
          ...store,
          async ping() {
            const failing = writes.commits.failing;
            if (failing !== null) throw new Error(`acknowledged writes wait for the database file (${failing})`);
            await store.ping();
          },
        },
        async lockNode() {
          unlock = lockSqlite(target);
        },
        cluster: null,
        gateConnection: database.connection,
        // The workers' statements on a failing file fail as statements (DB_QUERY_FAILED); the front's own writes
        // wait for it (group-commit.ts).
        isUnavailable: () => false,
        connections: 2,
        async close(): Promise<void> {
          await unlock?.();
          await writes.close();
          await database.prisma.$disconnect();
        },
      };
    },
  };
}
