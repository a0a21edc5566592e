/**
 * The one way to open a Prisma client, used by the front and by each worker thread (one client each:
 * never one per run, never shared across threads). Prisma 7 is Rust-free; better-sqlite3 is the driver.
 */
import { PrismaBetterSqlite3 } from '@prisma/adapter-better-sqlite3';
import { PrismaClient } from './generated/client.js';

export type Db = InstanceType<typeof PrismaClient>;

export function createPrismaClient(databaseFile: string): Db {
  // timeout: how long a connection waits for SQLite's write lock before SQLITE_BUSY (several threads
  // and the front share one WAL-mode file).
  const adapter = new PrismaBetterSqlite3({ url: databaseFile, timeout: 10_000 });
  return new PrismaClient({ adapter });
}
