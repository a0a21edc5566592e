/**
 * Once per jest run: an id for this run's test databases (every worker inherits ATOLL_TEST_RUN_ID), a temporary
 * folder of the run's own that holds every test's temporary folders (TMPDIR, inherited too; global-teardown
 * removes it, so a suite that left folders behind leaves nothing in the machine's /tmp), and on PostgreSQL a clear
 * failure up front when the server cannot be reached.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { newRunId, postgresqlUrl, TEST_POSTGRESQL_SERVER, TEST_STORE } from './test-database';
import { RUN_TMP_ENV, RUN_TMP_PREFIX } from './run-tmp';

export default async function globalSetup(): Promise<void> {
  process.env.ATOLL_TEST_RUN_ID ||= newRunId();
  // mkdtemp's suffix keeps two jest runs side by side apart.
  const runTmp = fs.mkdtempSync(path.join(os.tmpdir(), RUN_TMP_PREFIX));
  // Traversable, not listable, by others (mkdtemp makes it 0700): cells that run as OS users of their own reach
  // their scratch folders, which test servers make in here (helpers/server.ts), as they do in /tmp.
  fs.chmodSync(runTmp, 0o711);
  process.env[RUN_TMP_ENV] = runTmp;
  process.env.TMPDIR = runTmp;
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
