/**
 * A PostgreSQL database of a test's own (`atoll_t_<what>_<random>`) on the machine's server (PG_TEST_URL, by
 * default postgresql://postgres@127.0.0.1:5432/postgres), dropped WITH (FORCE) afterwards.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const PG_ADMIN_URL = process.env.PG_TEST_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  name: string;
  /** The database's URL on the real server. */
  url: string;
  /** The same database through another host and port (a proxy in front of the server). */
  urlVia(port: number, host?: string): string;
  /** One query on a fresh connection (for reading rows back without Prisma). */
  query<R extends pg.QueryResultRow = any>(text: string, values?: unknown[]): Promise<R[]>;
  drop(): Promise<void>;
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: PG_ADMIN_URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** Names a fresh database; `create: false` leaves creating it to the server under test. */
export async function testDatabase(what: string, options: { create?: boolean } = {}): Promise<TestDatabase> {
  const name = `atoll_t_${what.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}_${randomBytes(4).toString('hex')}`;
  if (options.create !== false) await admin((c) => c.query(`CREATE DATABASE "${name}"`));
  const urlOf = (host: string, port: string) => {
    const u = new URL(PG_ADMIN_URL);
    u.hostname = host;
    u.port = port;
    u.pathname = `/${name}`;
    return u.toString();
  };
  const base = new URL(PG_ADMIN_URL);
  return {
    name,
    url: urlOf(base.hostname, base.port || '5432'),
    urlVia: (port, host = '127.0.0.1') => urlOf(host, String(port)),
    async query(text, values) {
      const c = new pg.Client({ connectionString: urlOf(base.hostname, base.port || '5432') });
      await c.connect();
      try {
        return (await c.query(text, values)).rows;
      } finally {
        await c.end();
      }
    },
    drop: () => admin((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => undefined),
  };
}
