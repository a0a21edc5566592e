/**
 * Once per jest run: an id for this run's test databases (every worker inherits ATOLL_TEST_RUN_ID), and on
 * PostgreSQL a clear failure up front when the server cannot be reached.
 */
import pg from 'pg';
import { newRunId, postgresqlUrl, TEST_POSTGRESQL_SERVER, TEST_STORE } from './test-database';

export default async function globalSetup(): Promise<void> {
  process.env.ATOLL_TEST_RUN_ID ||= newRunId();
  if (TEST_STORE !== 'postgresql') return;
  const client = new pg.Client({ connectionString: postgresqlUrl('postgres'), connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (err) {
    throw new Error(`ATOLL_TEST_DATABASE=postgresql: cannot reach PostgreSQL at ${TEST_POSTGRESQL_SERVER} (ATOLL_TEST_POSTGRESQL) as a user that may create databases: ${(err as Error).message}`);
  } finally {
    await client.end().catch(() => undefined);
  }
}
