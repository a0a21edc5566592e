/** `npm run db:migrate`: applies pending migrations to DATABASE_URL and says what it did. */
import { loadConfig } from '../config.js';
import { createLogger } from '../logger.js';
import { storeOptionsOf } from '../config-views.js';
import { describeTarget } from './database-target.js';
import { openStore } from './open-store.js';

async function main(): Promise<void> {
  const config = loadConfig(process.env, process.cwd());
  const report = await openStore(config.database, storeOptionsOf(config, createLogger('info', { process: 'migrate' }))).migrate();
  console.log(JSON.stringify({ database: describeTarget(config.database), ...report }));
  if (report.checksumMismatches.length) console.error(`warning: applied migrations changed since: ${report.checksumMismatches.join(', ')}`);
}

main().catch((err: unknown) => {
  console.error(String((err as Error).message));
  process.exit(1);
});
