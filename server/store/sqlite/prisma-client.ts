/**
 * The front's Prisma client on SQLite: Prisma 7 is Rust-free; better-sqlite3 is the driver. Only the front opens
 * the database file. Workers hold a Prisma client of their own whose adapter forwards every statement to
 * the front (workers/worker/db-forwarding.ts), so this module is never in a worker's import graph.
 */
import { PrismaBetterSqlite3 } from '@prisma/adapter-better-sqlite3';
import type { SqlDriverAdapter, SqlDriverAdapterFactory } from '@prisma/driver-adapter-utils';
import { PrismaClient } from '../../../prisma/generated/sqlite/client.js';
import type { Db } from '../../../prisma/client-type.js';
import { compileQueryCompiler } from '../../../prisma/query-compiler.js';
import { queryCompilerFrom } from '../../../prisma/query-compiler-loader.js';

export type { Db } from '../../../prisma/client-type.js';

export interface FrontDatabase {
  prisma: Db;
  /**
   * The client's own connection (the adapter Prisma uses, opened once): the worker query gate executes the
   * statements it allows on it, so the front keeps one read connection whatever the number of workers.
   */
  connection(): Promise<SqlDriverAdapter>;
}

/** SQLite's generated Prisma client over any SQLite driver adapter; its query compiler decoded without its module (query-compiler.ts). */
export function prismaClientOver(adapter: SqlDriverAdapterFactory): Db {
  return new PrismaClient({ adapter, ...queryCompilerFrom(() => compileQueryCompiler('sqlite')) } as ConstructorParameters<typeof PrismaClient>[0]);
}

export function openFrontDatabase(databaseFile: string): FrontDatabase {
  // timeout: how long a connection waits for SQLite's write lock before SQLITE_BUSY (the front's write
  // connection shares the WAL-mode file).
  const driver = new PrismaBetterSqlite3({ url: databaseFile, timeout: 10_000 });
  let connected: Promise<SqlDriverAdapter> | null = null;
  const factory: SqlDriverAdapterFactory = {
    provider: driver.provider,
    adapterName: driver.adapterName,
    connect: () => (connected ??= driver.connect()),
  };
  const prisma = prismaClientOver(factory);
  return { prisma, connection: () => factory.connect() };
}

export function createPrismaClient(databaseFile: string): Db {
  return openFrontDatabase(databaseFile).prisma;
}
