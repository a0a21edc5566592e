/**
 * Migrations, whatever the database: each database keeps its own in prisma/<kind>/migrations/<name>/migration.sql
 * (Prisma's layout, `migration_lock.toml` naming the provider), applied in name order by its implementation
 * folder and recorded in `_prisma_migrations` with Prisma's own columns and checksums (the sha256 of
 * migration.sql; the name is the folder's), so `prisma migrate status/deploy` agree wherever Prisma's native
 * schema engine is available. Atoll applies them itself because that engine cannot be downloaded offline.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { DatabaseKind } from './database-target.js';

const ROOT = path.resolve(__dirname, '../../..');

export interface MigrationReport {
  applied: string[];
  alreadyApplied: string[];
  /** Applied migrations whose migration.sql changed since (a warning, not a refusal). */
  checksumMismatches: string[];
}

export class MigrationError extends Error {
  override name = 'MigrationError';
}

export interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

/** The migrations folder of one kind of database. */
export function migrationsFolder(kind: DatabaseKind): string {
  return path.join(ROOT, 'prisma', kind, 'migrations');
}

export function listMigrations(migrationsDir: string): Migration[] {
  return fs
    .readdirSync(migrationsDir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && fs.existsSync(path.join(migrationsDir, d.name, 'migration.sql')))
    .map((d) => d.name)
    .sort()
    .map((name) => {
      const sql = fs.readFileSync(path.join(migrationsDir, name, 'migration.sql'), 'utf8');
      return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    });
}
