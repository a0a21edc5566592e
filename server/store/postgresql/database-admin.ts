/**
 * Creating and dropping whole databases on a PostgreSQL server, for tools that need a scratch database of their
 * own (`npm run bench` runs each Atoll it starts on a fresh one). Here because only this folder may load pg.
 */
import pg from 'pg';

const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

/** `serverUrl` (any database of that server) with its database replaced by `name`. */
export function databaseUrl(serverUrl: string, name: string): string {
  const u = new URL(serverUrl);
  u.pathname = `/${encodeURIComponent(name)}`;
  return u.toString();
}

async function onServer<T>(serverUrl: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Creates database `name`; fails if it exists. `serverUrl` names a database to connect through (postgres). */
export async function createDatabase(serverUrl: string, name: string): Promise<void> {
  await onServer(serverUrl, (c) => c.query(`CREATE DATABASE ${quoteIdent(name)}`));
}

/** Drops database `name` if it exists, ending the sessions still on it. */
export async function dropDatabase(serverUrl: string, name: string): Promise<void> {
  await onServer(serverUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`));
}
