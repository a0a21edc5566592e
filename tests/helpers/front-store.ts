/**
 * The front's RunStore without a server, on the test store (ATOLL_TEST_DATABASE), built the way each backend
 * builds it: migrations applied, Prisma for reads, the run path's group-committed writes. Built from the
 * backend's parts rather than through openStore, so a test can read the group commit's counters.
 *
 * Prisma's query compiler cannot load inside jest's module sandbox: the store's reads work only in a plain
 * Node process (readThroughPrisma); its writes do not go through Prisma and work here.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';
import { createLogger } from '../../server/logger';
import { migrationsFolder } from '../../server/store/migrations';
import { createPostgresqlBackend } from '../../server/store/postgresql/postgresql-backend';
import { createPool, writePoolConfig } from '../../server/store/postgresql/pools';
import { openReadClient } from '../../server/store/postgresql/prisma-client';
import { createPgRunWrites } from '../../server/store/postgresql/run-writes';
import { createPrismaRunStore } from '../../server/store/prisma-run-store';
import { applyMigrations } from '../../server/store/sqlite/apply-migrations';
import { createPrismaClient } from '../../server/store/sqlite/prisma-client';
import { createRunWrites } from '../../server/store/sqlite/run-writes';
import { parseDatabaseUrl } from '../../server/store/database-target';
import type { RunStore } from '../../server/store/store';
import { ROOT } from './server';
import { testDatabaseUrl } from './test-database';

export interface FrontStore {
  store: RunStore;
  /** The database's URL (queryTestDatabase, readThroughPrisma). */
  url: string;
  /** The group commit's count of writes applied again one by one after their batch failed. */
  retriedAlone(): number;
  close(): Promise<void>;
}

/** The front's store on a fresh database of the folder `dir`. */
export async function openFrontStore(dir: string): Promise<FrontStore> {
  const url = testDatabaseUrl(dir);
  const target = parseDatabaseUrl(url, dir);
  switch (target.kind) {
    case 'sqlite': {
      applyMigrations(target.file, migrationsFolder('sqlite'));
      const prisma = createPrismaClient(target.file);
      const writes = createRunWrites(target.file, { busyTimeoutMs: 5000, log: createLogger('silent') });
      return {
        store: createPrismaRunStore(prisma, writes),
        url,
        retriedAlone: () => writes.commits.stats.retriedAlone,
        async close() {
          await writes.close();
          await prisma.$disconnect();
        },
      };
    }
    case 'postgresql': {
      const log = createLogger('silent');
      // The backend's own start-up: it creates the database and applies the migrations.
      await createPostgresqlBackend(target, { synchronous: 'normal', poolSize: 2, startupWaitMs: 10_000, log }).migrate();
      const readPool = new pg.Pool({ connectionString: url, max: 2 });
      const writePool = createPool(writePoolConfig(url, 1), log);
      const reads = openReadClient(readPool);
      const writes = createPgRunWrites(writePool, log);
      return {
        store: createPrismaRunStore(reads.prisma, writes),
        url,
        retriedAlone: () => writes.commits.stats.retriedAlone,
        async close() {
          await writes.commits.close(5_000);
          await reads.prisma.$disconnect();
          await Promise.all([readPool.end(), writePool.end()]);
        },
      };
    }
  }
}

/**
 * Runs `body` (the source of an async function of `store`, the front's RunStore on Prisma, read-only) in a
 * plain Node process on the database at `url`; returns what it returned, through JSON.
 */
export function readThroughPrisma(url: string, body: string): any {
  const dist = (file: string) => JSON.stringify(path.join(ROOT, 'dist/server/store', file));
  const open = url.startsWith('file:')
    ? `const prisma = require(${dist('sqlite/prisma-client.js')}).createPrismaClient(${JSON.stringify(url.slice('file:'.length))}); const end = () => prisma.$disconnect();`
    : `const pool = new (require(${JSON.stringify(path.join(ROOT, 'node_modules/pg'))}).Pool)({ connectionString: ${JSON.stringify(url)}, max: 1 });
       const { prisma } = require(${dist('postgresql/prisma-client.js')}).openReadClient(pool);
       const end = () => prisma.$disconnect().then(() => pool.end());`;
  const script = `
    ${open}
    const { createPrismaRunStore } = require(${dist('prisma-run-store.js')});
    const store = createPrismaRunStore(prisma, null);
    (${body})(store).then((out) => { process.stdout.write(JSON.stringify(out)); return end(); });
  `;
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 }));
}
