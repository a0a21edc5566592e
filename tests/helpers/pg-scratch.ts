/**
 * Scratch PostgreSQL databases for tests: each test file creates its own (`atoll_t_<random>`) on the server of
 * TEST_POSTGRESQL_URL (default: the local server, user postgres) and drops it at the end, so tests never share
 * a database and a failed run leaves nothing behind but a database that is obviously a test's.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** A database on the test server to create and drop others from (their URLs differ from it only in the database). */
export const TEST_POSTGRESQL_URL = process.env.TEST_POSTGRESQL_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';

/** `url` with its database (path) replaced by `database`. */
export function urlOf(database: string, base = TEST_POSTGRESQL_URL): string {
  const u = new URL(base);
  u.pathname = `/${database}`;
  return u.toString();
}

async function onAdmin<T>(use: (admin: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: TEST_POSTGRESQL_URL, connectionTimeoutMillis: 10_000 });
  admin.on('error', () => undefined);
  await admin.connect();
  try {
    return await use(admin);
  } finally {
    await admin.end().catch(() => undefined);
  }
}

export interface ScratchDatabase {
  name: string;
  url: string;
  /** Creates it (code under test may also create it itself, from `url`). */
  create(): Promise<void>;
  /** A new connected client on it; the caller ends it. */
  connect(): Promise<pg.Client>;
  /** Drops it whatever still holds it (FORCE ends its other sessions); no error if it does not exist. */
  drop(): Promise<void>;
}

/** A database name and URL of its own, not created yet. */
export function scratchDatabase(): ScratchDatabase {
  const name = `atoll_t_${randomBytes(6).toString('hex')}`;
  const url = urlOf(name);
  return {
    name,
    url,
    create: () => onAdmin((admin) => admin.query(`CREATE DATABASE "${name}"`)).then(() => undefined),
    async connect() {
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
      client.on('error', () => undefined);
      await client.connect();
      return client;
    },
    drop: () => onAdmin((admin) => admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => undefined),
  };
}

/** A database created for the caller, which drops it. */
export async function createdDatabase(): Promise<ScratchDatabase> {
  const db = scratchDatabase();
  await db.create();
  return db;
}
