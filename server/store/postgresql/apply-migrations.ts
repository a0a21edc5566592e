/**
 * Applies PostgreSQL's migrations (server/store/migrations.ts lists them) in name order, each in its own
 * transaction, recording each in `_prisma_migrations` exactly as Prisma's migrate would. Held under
 * pg_advisory_lock(72707369), the key Prisma's schema engine takes, so nodes starting together (or Prisma's own
 * CLI) apply each migration exactly once. The lock is a session lock: run it on a direct connection, never
 * through PgBouncer in transaction mode.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { listMigrations, MigrationError, planMigrations, type MigrationReport } from '../migrations.js';

const PRISMA_MIGRATE_LOCK = 72707369;

// Prisma's own DDL for PostgreSQL.
const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)`;

export async function applyMigrations(client: pg.Client, migrationsDir: string): Promise<MigrationReport> {
  await client.query('SELECT pg_advisory_lock($1)', [PRISMA_MIGRATE_LOCK]);
  try {
    await client.query(MIGRATIONS_TABLE);
    const { rows } = await client.query<{ migration_name: string; checksum: string; finished_at: Date | null; rolled_back_at: Date | null }>(
      'SELECT migration_name, checksum, finished_at, rolled_back_at FROM "_prisma_migrations"',
    );
    const { pending, report } = planMigrations(rows, listMigrations(migrationsDir));
    for (const m of pending) {
      const id = randomUUID();
      await client.query('INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, applied_steps_count) VALUES ($1, $2, $3, now(), 0)', [id, m.checksum, m.name]);
      try {
        await client.query('BEGIN');
        await client.query(m.sql);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        await client.query('UPDATE "_prisma_migrations" SET logs = $1 WHERE id = $2', [String((err as Error).message), id]).catch(() => undefined);
        throw new MigrationError(`migration ${m.name} failed: ${(err as Error).message}`);
      }
      await client.query('UPDATE "_prisma_migrations" SET finished_at = now(), applied_steps_count = 1 WHERE id = $1', [id]);
      report.applied.push(m.name);
    }
    return report;
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [PRISMA_MIGRATE_LOCK]).catch(() => undefined);
  }
}
