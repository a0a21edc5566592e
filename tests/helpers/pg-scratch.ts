/**
 * Scratch PostgreSQL databases for the PostgreSQL-only tests (tests/postgresql/): each test makes its own,
 * named atoll_t_<jest run id>_<random>, on the server of ATOLL_TEST_POSTGRESQL (default
 * postgresql://postgres@127.0.0.1:5432, no database name) and drops it at the end; a crashed file's leftovers
 * carry the run's prefix, which the test pass's teardown sweeps.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The test server, without a database name. */
const SERVER = (process.env.ATOLL_TEST_POSTGRESQL || 'postgresql://postgres@127.0.0.1:5432').replace(/\/+$/, '');

/** The URL of database `name` on the test server. */
export const urlOf = (name: string): string => `${SERVER}/${name}`;

const RUN_ID = (process.env.ATOLL_TEST_RUN_ID || `p${process.pid}`).toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 12);

async function onAdmin<T>(use: (admin: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: urlOf('postgres'), connectionTimeoutMillis: 10_000 });
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
  const name = `atoll_t_${RUN_ID}_${randomBytes(6).toString('hex')}`;
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
