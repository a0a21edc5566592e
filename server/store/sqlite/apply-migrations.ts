/**
 * Applies SQLite's migrations (server/store/migrations.ts lists them) in name order, recording each in
 * `_prisma_migrations` exactly as Prisma's migrate would, and switches the file to WAL.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { listMigrations, MigrationError, planMigrations, type MigrationReport } from '../migrations.js';

// Prisma's own DDL for SQLite.
const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    TEXT PRIMARY KEY NOT NULL,
    "checksum"              TEXT NOT NULL,
    "finished_at"           DATETIME,
    "migration_name"        TEXT NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        DATETIME,
    "started_at"            DATETIME NOT NULL DEFAULT current_timestamp,
    "applied_steps_count"   INTEGER UNSIGNED NOT NULL DEFAULT 0
)`;

export function applyMigrations(databaseFile: string, migrationsDir: string): MigrationReport {
  fs.mkdirSync(path.dirname(databaseFile), { recursive: true });
  const db = new Database(databaseFile, { timeout: 10_000 });
  try {
    // WAL lets the front's read connection read while its write connection writes; it is a property of the
    // file, set once here.
    db.pragma('journal_mode = WAL');
    db.exec(MIGRATIONS_TABLE);
    const rows = db
      .prepare('SELECT migration_name, checksum, finished_at, rolled_back_at FROM "_prisma_migrations"')
      .all() as { migration_name: string; checksum: string; finished_at: string | null; rolled_back_at: string | null }[];
    const { pending, report } = planMigrations(rows, listMigrations(migrationsDir));
    for (const m of pending) {
      const id = randomUUID();
      db.prepare('INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, applied_steps_count) VALUES (?, ?, ?, ?, 0)').run(
        id,
        m.checksum,
        m.name,
        new Date().toISOString(),
      );
      try {
        db.transaction(() => db.exec(m.sql))();
      } catch (err) {
        db.prepare('UPDATE "_prisma_migrations" SET logs = ? WHERE id = ?').run(String((err as Error).message), id);
        throw new MigrationError(`migration ${m.name} failed: ${(err as Error).message}`);
      }
      db.prepare('UPDATE "_prisma_migrations" SET finished_at = ?, applied_steps_count = 1 WHERE id = ?').run(new Date().toISOString(), id);
      report.applied.push(m.name);
    }
    return report;
  } finally {
    db.close();
  }
}
