/**
 * The front's Prisma client on PostgreSQL: PostgreSQL's generated client (prisma/generated/postgresql/) over
 * @prisma/adapter-pg and a pg pool of DB_POOL_SIZE connections, for every read and the statements the worker
 * gate allows. Workers hold their own client of the same kind, whose adapter forwards to the front
 * (workers/worker/db-forwarding.ts): they open no connection.
 */
import { PrismaPg } from '@prisma/adapter-pg';
import type { SqlDriverAdapter, SqlDriverAdapterFactory } from '@prisma/driver-adapter-utils';
import type pg from 'pg';
import { PrismaClient } from '../../../prisma/generated/postgresql/client.js';
import type { Db } from '../../../prisma/client-type.js';
import { compileQueryCompiler } from '../../../prisma/query-compiler.js';
import { queryCompilerFrom } from '../../../prisma/query-compiler-loader.js';

/**
 * PostgreSQL's generated Prisma client over any PostgreSQL driver adapter (the gate's recorder included); its
 * query compiler decoded without its module (prisma/query-compiler.ts).
 */
export function prismaClientOver(adapter: SqlDriverAdapterFactory): Db {
  return new PrismaClient({ adapter, ...queryCompilerFrom(() => compileQueryCompiler('postgres')) } as ConstructorParameters<typeof PrismaClient>[0]) as unknown as Db;
}

export function openReadClient(pool: pg.Pool): { prisma: Db; connection(): Promise<SqlDriverAdapter> } {
  const driver = new PrismaPg(pool);
  let connected: Promise<SqlDriverAdapter> | null = null;
  const factory: SqlDriverAdapterFactory = { provider: driver.provider, adapterName: driver.adapterName, connect: () => (connected ??= driver.connect()) };
  return { prisma: prismaClientOver(factory), connection: () => factory.connect() };
}
