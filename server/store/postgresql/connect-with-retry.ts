/**
 * Reaching PostgreSQL at start-up: retry until DB_STARTUP_WAIT_MS has passed, saying every few seconds which
 * database (DATABASE_URL, password masked) is awaited and why; create the database when the server has none of
 * that name (as `prisma migrate deploy` does), through the server's `postgres` database.
 */
import pg from 'pg';
import type { PostgresqlTarget } from '../database-target.js';
import type { StoreOptions } from '../backend.js';
import { createDatabase, databaseUrl } from './database-admin.js';
import { isUnavailable } from './unavailable.js';

export class DatabaseUnreachableError extends Error {
  override name = 'DatabaseUnreachableError';
}

/** One client on the target database, connected; the caller ends it. */
export async function connectWithRetry(target: PostgresqlTarget, options: Pick<StoreOptions, 'startupWaitMs' | 'log'>): Promise<pg.Client> {
  const deadline = Date.now() + options.startupWaitMs;
  let delay = 200;
  let lastSaid = 0;
  for (;;) {
    const client = new pg.Client({ connectionString: target.url, connectionTimeoutMillis: 5_000 });
    client.on('error', () => undefined); // a dropped idle connection is seen by the next query
    try {
      await client.connect();
      return client;
    } catch (err) {
      await client.end().catch(() => undefined);
      if ((err as { code?: string }).code === '3D000') {
        await createTargetDatabase(target);
        continue;
      }
      const reason = String((err as Error).message || (err as { code?: string }).code || err);
      if (!isUnavailable(err) || Date.now() >= deadline) {
        throw new DatabaseUnreachableError(`cannot reach the database DATABASE_URL=${target.masked}: ${reason}${isUnavailable(err) ? ` (waited ${options.startupWaitMs} ms, DB_STARTUP_WAIT_MS)` : ''}`);
      }
      if (Date.now() - lastSaid >= 5_000) {
        lastSaid = Date.now();
        options.log.warn({ database: target.masked, reason, gives_up_in_ms: deadline - Date.now() }, 'waiting for the database (DATABASE_URL)');
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 2_000);
    }
  }
}

/** Creates the target's database through the server's `postgres` database; another node may be doing it too. */
async function createTargetDatabase(target: PostgresqlTarget): Promise<void> {
  try {
    await createDatabase(databaseUrl(target.url, 'postgres'), target.database);
  } catch (err) {
    // 42P04: it exists now; 23505: another node's CREATE DATABASE of the same name won the race at that moment.
    const code = (err as { code?: string }).code;
    if (code !== '42P04' && code !== '23505') throw new DatabaseUnreachableError(`database ${target.database} does not exist and could not be created: ${(err as Error).message}`);
  }
}
