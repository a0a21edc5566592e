/**
 * Once per jest run: removes the run's temporary folder (global-setup), and on PostgreSQL drops what is left of
 * this run's test databases (a file that crashed).
 */
import { removeRunTmp } from './run-tmp';
import { dropTestDatabases, runDatabasePrefix, TEST_STORE } from './test-database';

export default async function globalTeardown(): Promise<void> {
  removeRunTmp();
  if (TEST_STORE !== 'postgresql') return;
  const left = await dropTestDatabases(runDatabasePrefix());
  if (left.length > 0) console.log(`dropped ${left.length} test database(s) a test file left: ${left.join(', ')}`);
}
