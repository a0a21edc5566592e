/** Once per jest run, on PostgreSQL: drops what is left of this run's test databases (a file that crashed). */
import { dropTestDatabases, runDatabasePrefix, TEST_STORE } from './test-database';

export default async function globalTeardown(): Promise<void> {
  if (TEST_STORE !== 'postgresql') return;
  const left = await dropTestDatabases(runDatabasePrefix());
  if (left.length > 0) console.log(`dropped ${left.length} test database(s) a test file left: ${left.join(', ')}`);
}
