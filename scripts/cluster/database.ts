/** The checker's own PostgreSQL database: created fresh on a server, dropped afterwards (unless kept). */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export interface CheckDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

async function onAdmin<T>(server: string, use: (admin: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: `${server}/postgres`, connectionTimeoutMillis: 10_000 });
  admin.on('error', () => undefined);
  await admin.connect();
  try {
    return await use(admin);
  } finally {
    await admin.end().catch(() => undefined);
  }
}

/** A new, empty database `atoll_check_<random>` on `server` (a URL without a database name). */
export async function createCheckDatabase(server: string): Promise<CheckDatabase> {
  const name = `atoll_check_${randomBytes(6).toString('hex')}`;
  await onAdmin(server, (admin) => admin.query(`CREATE DATABASE "${name}"`));
  return {
    name,
    url: `${server}/${name}`,
    drop: () => onAdmin(server, (admin) => admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => undefined),
  };
}
