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

/** A row of `_prisma_migrations` as both runners read it. */
export interface AppliedMigration {
  migration_name: string;
  checksum: string;
  finished_at: unknown;
  rolled_back_at: unknown;
}

/**
 * What to apply, given what `_prisma_migrations` holds: refuses (MigrationError) while an earlier migration is
 * marked failed and not rolled back, as Prisma does; reports the applied ones and those edited since.
 */
export function planMigrations(rows: AppliedMigration[], migrations: Migration[]): { pending: Migration[]; report: MigrationReport } {
  const failed = rows.find((r) => r.finished_at === null && r.rolled_back_at === null);
  if (failed) {
    throw new MigrationError(
      `migration ${failed.migration_name} failed earlier and was not rolled back; fix the database, then mark it ` +
        `rolled back (prisma migrate resolve --rolled-back ${failed.migration_name}) or delete its row`,
    );
  }
  const done = new Map(rows.filter((r) => r.finished_at !== null && r.rolled_back_at === null).map((r) => [r.migration_name, r]));
  const report: MigrationReport = { applied: [], alreadyApplied: [], checksumMismatches: [] };
  const pending: Migration[] = [];
  for (const m of migrations) {
    const prior = done.get(m.name);
    if (!prior) pending.push(m);
    else {
      report.alreadyApplied.push(m.name);
      if (prior.checksum !== m.checksum) report.checksumMismatches.push(m.name);
    }
  }
  return { pending, report };
}
