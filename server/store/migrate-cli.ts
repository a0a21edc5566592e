/** `npm run db:migrate`: applies pending migrations to DATABASE_URL and says what it did. */
import path from 'node:path';
import { loadConfig } from '../config.js';
import { applyMigrations } from './migrations.js';

const root = path.resolve(__dirname, '../../..');
try {
  const config = loadConfig(process.env, process.cwd());
  const report = applyMigrations(config.databaseFile, path.join(root, 'prisma/migrations'));
  console.log(JSON.stringify({ database: config.databaseFile, ...report }));
  if (report.checksumMismatches.length) console.error(`warning: applied migrations changed since: ${report.checksumMismatches.join(', ')}`);
} catch (err) {
  console.error(String((err as Error).message));
  process.exit(1);
}
