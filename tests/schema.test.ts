/**
 * SQLite's migrations vs the Prisma schema: the migrated database has every model, column and index the
 * models (prisma/models.prisma, linked into SQLite's schema folder prisma/sqlite/) declare, and
 * `_prisma_migrations` is recorded exactly as Prisma's own migrate would record it; a database of an earlier
 * schema migrates with its rows (stored sizes). PostgreSQL's side is
 * tests/postgresql/schema.test.ts; both databases must share one migration history (tested here, no server needed).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { readSchema, schemaText } from './helpers/prisma-schema';
import { ROOT } from './helpers/server';
import { listMigrations, migrationsFolder } from '../server/store/migrations';
import { applyMigrations } from '../server/store/sqlite/apply-migrations';

const MIGRATIONS = migrationsFolder('sqlite');

function freshDb(): string {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-schema-')), 'nested', 'atoll.db');
}

test('the migrated database has every model, column and index that the Prisma schema declares', () => {
  const file = freshDb();
  const report = applyMigrations(file, MIGRATIONS);
  expect(report.applied).toEqual(listMigrations(MIGRATIONS).map((m) => m.name));
  const db = new Database(file, { readonly: true });
  const models = readSchema(schemaText('sqlite'));
  expect(models.map((m) => m.name).sort()).toEqual(['Message', 'Node', 'QueueUser', 'Run', 'RunEvent', 'Thread', 'User', 'UserStorage']);
  for (const model of models) {
    const columns = (db.prepare(`PRAGMA table_info("${model.name}")`).all() as { name: string }[]).map((c) => c.name);
    expect([model.name, columns.sort()]).toEqual([model.name, model.fields.map((f) => f.name).sort()]);
    const indexes = (db.prepare(`PRAGMA index_list("${model.name}")`).all() as { name: string; unique: number; origin: string }[])
      .filter((i) => i.origin === 'c')
      .map((i) => ({
        unique: i.unique === 1,
        columns: (db.prepare(`PRAGMA index_info("${i.name}")`).all() as { name: string }[]).map((c) => c.name),
      }));
    for (const { columns, unique } of model.indexes) expect([model.name, indexes]).toEqual([model.name, expect.arrayContaining([{ columns, unique }])]);
    expect(indexes).toHaveLength(model.indexes.length);
  }
  expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
  db.close();
});

test('_prisma_migrations holds Prisma\'s columns and sha256 checksums; applying again changes nothing', () => {
  const file = freshDb();
  applyMigrations(file, MIGRATIONS);
  const second = applyMigrations(file, MIGRATIONS);
  expect(second.applied).toEqual([]);
  expect(second.checksumMismatches).toEqual([]);
  const db = new Database(file, { readonly: true });
  const columns = (db.prepare('PRAGMA table_info("_prisma_migrations")').all() as { name: string }[]).map((c) => c.name);
  expect(columns).toEqual(['id', 'checksum', 'finished_at', 'migration_name', 'logs', 'rolled_back_at', 'started_at', 'applied_steps_count']);
  const rows = db.prepare('SELECT * FROM "_prisma_migrations" ORDER BY migration_name').all() as Record<string, unknown>[];
  const migrations = listMigrations(MIGRATIONS);
  expect(rows).toHaveLength(migrations.length);
  rows.forEach((row, i) => {
    const sql = fs.readFileSync(path.join(MIGRATIONS, migrations[i].name, 'migration.sql'));
    expect(row).toMatchObject({ migration_name: migrations[i].name, checksum: createHash('sha256').update(sql).digest('hex'), applied_steps_count: 1, rolled_back_at: null, logs: null });
    expect(row.finished_at).toEqual(expect.any(String));
    expect(row.id).toMatch(/^[0-9a-f-]{36}$/);
  });
  db.close();
});

test('a failed migration left unresolved blocks start-up with instructions', () => {
  const file = freshDb();
  applyMigrations(file, MIGRATIONS);
  const db = new Database(file);
  db.prepare('INSERT INTO "_prisma_migrations" (id, checksum, migration_name, applied_steps_count) VALUES (?, ?, ?, 0)').run('x', 'y', '99990101000000_broken');
  db.close();
  expect(() => applyMigrations(file, MIGRATIONS)).toThrow(/99990101000000_broken failed earlier.*prisma migrate resolve --rolled-back/);
});

test('a migration whose SQL fails is recorded with its error and applies nothing', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-migrations-'));
  fs.mkdirSync(path.join(dir, '001_ok'));
  fs.writeFileSync(path.join(dir, '001_ok', 'migration.sql'), 'CREATE TABLE "A" ("id" TEXT NOT NULL PRIMARY KEY);\n');
  fs.mkdirSync(path.join(dir, '002_bad'));
  fs.writeFileSync(path.join(dir, '002_bad', 'migration.sql'), 'CREATE TABLE "B" ("id" TEXT);\nCREATE TABLE "A" ("id" TEXT);\n');
  const file = freshDb();
  expect(() => applyMigrations(file, dir)).toThrow(/migration 002_bad failed: table "A" already exists/);
  const db = new Database(file, { readonly: true });
  expect(db.prepare(`SELECT name FROM sqlite_master WHERE type='table' AND name='B'`).get()).toBeUndefined();
  expect(db.prepare('SELECT logs, finished_at FROM "_prisma_migrations" WHERE migration_name = ?').get('002_bad')).toMatchObject({ logs: expect.stringMatching(/already exists/), finished_at: null });
  db.close();
});

test('a database of the schema before stored sizes migrates: old rows get their length() as size, keep everything else, and message ids are never given again', () => {
  // The migrations before 20261208000000_stored_sizes, as a database that ran them holds them (same checksums).
  const before = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-migrations-'));
  for (const m of listMigrations(MIGRATIONS).filter((m) => m.name < '20261208000000_stored_sizes')) fs.cpSync(path.join(MIGRATIONS, m.name), path.join(before, m.name), { recursive: true });
  const file = freshDb();
  applyMigrations(file, before);
  const db = new Database(file);
  const at = '2026-12-01T10:00:00.000+00:00';
  db.prepare('INSERT INTO "User" ("id", "createdAt") VALUES (?, ?)').run('u', at);
  db.prepare('INSERT INTO "Thread" ("id", "userId", "title", "createdAt", "updatedAt") VALUES (?, ?, ?, ?, ?)').run('t', 'u', null, at, at);
  db.prepare('INSERT INTO "Run" ("id", "threadId", "userId", "agentName", "input", "requestId", "queuedAt") VALUES (?, ?, ?, ?, ?, ?, ?)').run('r', 't', 'u', 'a', '{}', 'q', at);
  const message = db.prepare('INSERT INTO "Message" ("threadId", "runId", "role", "content", "createdAt") VALUES (?, ?, ?, ?, ?)');
  // 'é' is 2 bytes, '🙂' 4 bytes and 2 UTF-16 units: one character each to length(), the measure the cut used.
  message.run('t', 'r', 'user', 'héllo 🙂', at);
  message.run('t', 'r', 'assistant', 'x'.repeat(70_000), at);
  message.run('t', 'r', 'assistant', 'the newest, deleted', at);
  db.prepare('DELETE FROM "Message" WHERE "id" = 3').run();
  const event = db.prepare('INSERT INTO "RunEvent" ("id", "runId", "seq", "type", "payload", "timestamp") VALUES (?, ?, ?, ?, ?, ?)');
  event.run('e1', 'r', 1, 'message_received', '{"text":"héllo 🙂"}', at);
  event.run('e2', 'r', 2, 'partial_result', JSON.stringify({ text: 'e'.repeat(70_000) }), at);
  const rowsOf = (table: string) => db.prepare(`SELECT * FROM "${table}" ORDER BY "id"`).all() as Record<string, unknown>[];
  const [messages, events] = [rowsOf('Message'), rowsOf('RunEvent')];
  db.close();

  expect(applyMigrations(file, MIGRATIONS).applied).toEqual(['20261208000000_stored_sizes', '20261209000000_user_storage']);
  const after = new Database(file);
  // What the user stores is counted once, in bytes (UTF-8): 11 + 70,000 of messages, 22 + 70,011 of events.
  expect(after.prepare('SELECT "userId", "bytes" FROM "UserStorage"').all()).toEqual([{ userId: 'u', bytes: 140_044 }]);
  const migrated = (table: string) => after.prepare(`SELECT * FROM "${table}" ORDER BY "id"`).all() as Record<string, unknown>[];
  expect(migrated('Message')).toEqual(messages.map((m, i) => ({ ...m, size: [7, 70_000][i] })));
  expect(migrated('RunEvent')).toEqual(events.map((e, i) => ({ ...e, size: [18, 70_011][i] })));
  // "size" precedes the text: after it, SQLite would walk a large row's overflow pages to read it.
  const order = (table: string) => (after.prepare(`PRAGMA table_info("${table}")`).all() as { name: string }[]).map((c) => c.name);
  expect(order('Message').indexOf('size')).toBeLessThan(order('Message').indexOf('content'));
  expect(order('RunEvent').indexOf('size')).toBeLessThan(order('RunEvent').indexOf('payload'));
  // AUTOINCREMENT's counter came along: the deleted message's id 3 is not given again.
  expect(after.prepare('INSERT INTO "Message" ("threadId", "role", "content", "createdAt") VALUES (?, ?, ?, ?)').run('t', 'user', 'new', at).lastInsertRowid).toBe(4);
  // The foreign keys still hold: deleting the thread takes its messages and (through the run) its events.
  after.pragma('foreign_keys = ON');
  after.prepare('DELETE FROM "Thread" WHERE "id" = ?').run('t');
  expect(after.prepare('SELECT (SELECT COUNT(*) FROM "Message") + (SELECT COUNT(*) FROM "RunEvent") AS n').get()).toEqual({ n: 0 });
  expect(after.pragma('foreign_key_check')).toEqual([]);
  after.close();
});

test("SQLite's schema folder is the shared models plus its own datasource; its migrations are locked to sqlite", () => {
  const dir = path.join(ROOT, 'prisma/sqlite');
  expect(fs.realpathSync(path.join(dir, 'models.prisma'))).toBe(fs.realpathSync(path.join(ROOT, 'prisma/models.prisma')));
  expect(schemaText('sqlite')).toMatch(/datasource db \{\s*provider = "sqlite"\s*\}/);
  expect(fs.readFileSync(path.join(MIGRATIONS, 'migration_lock.toml'), 'utf8')).toMatch(/^provider = "sqlite"$/m);
});

test('migrations that databases already hold keep their names and checksums (a changed one would read as edited)', () => {
  expect(listMigrations(MIGRATIONS).map((m) => [m.name, m.checksum]).slice(0, 3)).toEqual([
    ['20261126000000_init', 'd90fee9e74d6d126acd32f23f2708dedfbe0b44060898334f7d28f849c9ddd29'],
    ['20261126010000_run_report', '84379bc42e7d41876c9bf96a0becb3d2a602318d2089391ba596cb410722398a'],
    ['20261126020000_replay_of', '295793c29c83b47c860b83dc3722dc40e31c0710d4f23ca7c83c716afe978730'],
  ]);
});

test("both databases' migration folders hold the same migrations: one history, whichever database a node runs on", () => {
  const names = (kind: 'sqlite' | 'postgresql') => listMigrations(migrationsFolder(kind)).map((m) => m.name);
  expect(names('sqlite').length).toBeGreaterThan(0);
  expect(names('postgresql')).toEqual(names('sqlite'));
  // Each folder is a full Prisma migrations folder (a stray directory without migration.sql would be skipped silently).
  for (const kind of ['sqlite', 'postgresql'] as const) {
    const dirs = fs.readdirSync(migrationsFolder(kind), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
    expect([kind, dirs]).toEqual([kind, names(kind)]);
  }
});
