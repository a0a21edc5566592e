/**
 * The front's pg pools: their settings, and what keeps a lost connection from ending the process. Every pool of
 * the front (reads, writes, the shared queue's) is made here; the tests build the write path on the same ones.
 */
import pg from 'pg';
import type { StoreOptions } from '../backend.js';
import { WRITE_CONNECTION_OPTIONS } from './run-statements.js';

/** The settings of every pool of the front; `max` connections. */
export function poolConfig(url: string, max: number): pg.PoolConfig {
  return {
    connectionString: url,
    max,
    // Fail fast when the server is gone rather than queue behind a connect that never ends (pg waits forever by default).
    connectionTimeoutMillis: 3_000,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    // A statement that hangs (a half-open connection) fails instead of holding its caller; the connection is then
    // discarded (unavailable.ts counts the timeout as the database being unreachable).
    query_timeout: 30_000,
    application_name: 'atoll',
  };
}

/**
 * The settings of the write path's pools (group commit, shared queue, lease): their statements are keyed lookups
 * (WRITE_CONNECTION_OPTIONS' generic plans, see run-statements.ts), and their connections are pipelined, so a
 * transaction's statements that do not wait for each other's answers go out together: one round trip, not one
 * each (on a busy machine each round trip is two process switches). Prisma's reads keep a plain pool.
 */
export function writePoolConfig(url: string, max: number): pg.PoolConfig {
  return { ...poolConfig(url, max), options: WRITE_CONNECTION_OPTIONS, pipeline: true };
}

/**
 * A pool whose connections never take the process down: a connection that drops while idle emits 'error' on the
 * pool, one that drops while checked out (mid-transaction) emits it on itself, and the pool listens only to idle
 * ones. Either way the query under way fails with the same error, which is what the callers act on.
 */
export function createPool(config: pg.PoolConfig, log: Pick<StoreOptions['log'], 'warn'>): pg.Pool {
  const pool = new pg.Pool(config);
  pool.on('error', (err) => log.warn({ err: err.message }, 'a database connection was lost; it reconnects on next use'));
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

