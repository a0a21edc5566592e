/**
 * A PostgreSQL database of a test's own, for tests that reach it through a proxy or read rows back: a scratch
 * database (pg-scratch.ts: named with the test run's prefix, on ATOLL_TEST_POSTGRESQL's server, swept by the
 * pass's teardown if a file crashes) with a URL through another host and port, and one-shot queries.
 */
import type pg from 'pg';
import { scratchDatabase } from './pg-scratch';

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

/** A fresh database; `create: false` leaves creating it to the server under test. */
export async function testDatabase(_what: string, options: { create?: boolean } = {}): Promise<TestDatabase> {
  const db = scratchDatabase();
  if (options.create !== false) await db.create();
  return {
    name: db.name,
    url: db.url,
    urlVia(port, host = '127.0.0.1') {
      const u = new URL(db.url);
      u.hostname = host;
      u.port = String(port);
      return u.toString();
    },
    async query(text, values) {
      const c = await db.connect();
      try {
        return (await c.query(text, values)).rows;
      } finally {
        await c.end();
      }
    },
    drop: db.drop,
  };
}
