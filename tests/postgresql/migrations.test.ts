/**
 * PostgreSQL's migration runner (server/store/postgresql/apply-migrations.ts) and `npm run db:migrate` on it:
 * nodes starting together apply each migration exactly once (Prisma's advisory lock), `_prisma_migrations` is
 * recorded as Prisma's migrate records it, a second start applies nothing, an edited migration is reported, a
 * failed one is recorded and blocks later starts with instructions, the CLI never prints a password, and a
 * database of an earlier schema migrates with its rows (stored sizes).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { createdDatabase, scratchDatabase, type ScratchDatabase } from '../helpers/pg-scratch';
import { ROOT } from '../helpers/server';
import { listMigrations, MigrationError, migrationsFolder } from '../../server/store/migrations';
import { applyMigrations } from '../../server/store/postgresql/apply-migrations';

const MIGRATIONS = migrationsFolder('postgresql');
const NAMES = listMigrations(MIGRATIONS).map((m) => m.name);
const MIGRATE_CLI = path.join(ROOT, 'dist/server/store/migrate-cli.js');
/** The key Prisma's schema engine locks (and so must Atoll). */
const PRISMA_MIGRATE_LOCK = 72707369;

const databases: ScratchDatabase[] = [];
const clients: pg.Client[] = [];

async function fresh(): Promise<ScratchDatabase> {
  const db = await createdDatabase();
  databases.push(db);
  return db;
}
async function connect(db: ScratchDatabase): Promise<pg.Client> {
  const client = await db.connect();
  clients.push(client);
  return client;
}

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  await Promise.all(databases.map((d) => d.drop()));
});

interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
}
function migrateCli(databaseUrl: string, env: Record<string, string> = {}): Promise<Exit> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [MIGRATE_CLI], { cwd: os.tmpdir(), env: { PATH: process.env.PATH ?? '', DATABASE_URL: databaseUrl, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    proc.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    proc.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** `url` with a password: the test server's own if it has one, else one that trust authentication ignores. */
function withPassword(url: string): { url: string; password: string } {
  const u = new URL(url);
  if (!u.password) u.password = 'never-print-me';
  return { url: u.toString(), password: decodeURIComponent(u.password) };
}

/** A temporary migrations folder: name → SQL. */
function folder(migrations: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-pg-migrations-'));
  for (const [name, sql] of Object.entries(migrations)) {
    fs.mkdirSync(path.join(dir, name));
    fs.writeFileSync(path.join(dir, name, 'migration.sql'), sql);
  }
  return dir;
}

const rowsOf = async (client: pg.Client) =>
  (await client.query('SELECT * FROM "_prisma_migrations" ORDER BY migration_name, started_at')).rows as {
    id: string;
    checksum: string;
    finished_at: Date | null;
    migration_name: string;
    logs: string | null;
    rolled_back_at: Date | null;
    started_at: Date;
    applied_steps_count: number;
  }[];

test('processes migrating one database that does not exist yet, all at once: it is created once and each migration applied once', async () => {
  const db = scratchDatabase();
  databases.push(db);
  const { url, password } = withPassword(db.url);
  const exits = await Promise.all(Array.from({ length: 4 }, () => migrateCli(url)));
  for (const e of exits) {
    expect(e).toMatchObject({ code: 0, stderr: '' });
    expect(e.stdout + e.stderr).not.toContain(password);
  }
  const reports = exits.map((e) => JSON.parse(e.stdout) as { database: string; applied: string[]; alreadyApplied: string[]; checksumMismatches: string[] });
  const masked = new URL(url);
  masked.password = '***';
  for (const r of reports) {
    expect(r.database).toBe(masked.toString());
    expect([...r.applied, ...r.alreadyApplied]).toEqual(NAMES); // each saw the whole history, in order
    expect(r.checksumMismatches).toEqual([]);
  }
  // One process applied them all under the lock; the others found them applied.
  expect(reports.flatMap((r) => r.applied).sort()).toEqual(NAMES);
  expect(reports.filter((r) => r.applied.length > 0)).toHaveLength(1);
  const client = await connect(db);
  expect((await rowsOf(client)).map((r) => r.migration_name)).toEqual(NAMES);
}, 60_000);

test('connections migrating at once: each migration applied once; the runner waits on Prisma\'s advisory lock', async () => {
  const db = await fresh();
  const holder = await connect(db);
  await holder.query('SELECT pg_advisory_lock($1)', [PRISMA_MIGRATE_LOCK]);
  const racers = await Promise.all(Array.from({ length: 4 }, () => connect(db)));
  const pids = racers.map((c) => (c as unknown as { processID: number }).processID);
  const reports = racers.map((c) => applyMigrations(c, MIGRATIONS));
  // Every racer's backend waits for the lock (a state, polled), and nothing is applied while another holds it.
  const waiting = async () =>
    (await holder.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted AND pid = ANY($2)`, [PRISMA_MIGRATE_LOCK, pids])).rows[0].n;
  const deadline = Date.now() + 20_000;
  while ((await waiting()) < racers.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  expect(await waiting()).toBe(racers.length);
  expect((await holder.query(`SELECT to_regclass('"_prisma_migrations"') AS t`)).rows[0].t).toBeNull();
  await holder.query('SELECT pg_advisory_unlock($1)', [PRISMA_MIGRATE_LOCK]);
  const done = await Promise.all(reports);
  expect(done.flatMap((r) => r.applied).sort()).toEqual(NAMES);
  for (const r of done) expect([...r.applied, ...r.alreadyApplied]).toEqual(NAMES);
  expect((await rowsOf(holder)).map((r) => r.migration_name)).toEqual(NAMES);
  // The lock is released after each run: the holder can take it again at once.
  expect((await holder.query('SELECT pg_try_advisory_lock($1) AS got', [PRISMA_MIGRATE_LOCK])).rows[0].got).toBe(true);
});

test("_prisma_migrations holds Prisma's columns and rows (sha256 checksums, finished, one step); a second start applies nothing", async () => {
  const client = await connect(await fresh());
  const first = await applyMigrations(client, MIGRATIONS);
  expect(first).toEqual({ applied: NAMES, alreadyApplied: [], checksumMismatches: [] });
  const columns = await client.query(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull, pg_get_expr(d.adbin, d.adrelid) AS default
     FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = '"_prisma_migrations"'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
  );
  // Prisma's own DDL for this table on PostgreSQL.
  expect(columns.rows).toEqual([
    { name: 'id', type: 'character varying(36)', notnull: true, default: null },
    { name: 'checksum', type: 'character varying(64)', notnull: true, default: null },
    { name: 'finished_at', type: 'timestamp with time zone', notnull: false, default: null },
    { name: 'migration_name', type: 'character varying(255)', notnull: true, default: null },
    { name: 'logs', type: 'text', notnull: false, default: null },
    { name: 'rolled_back_at', type: 'timestamp with time zone', notnull: false, default: null },
    { name: 'started_at', type: 'timestamp with time zone', notnull: true, default: 'now()' },
    { name: 'applied_steps_count', type: 'integer', notnull: true, default: '0' },
  ]);
  const rows = await rowsOf(client);
  expect(rows.map((r) => r.migration_name)).toEqual(NAMES);
  for (const row of rows) {
    const sql = fs.readFileSync(path.join(MIGRATIONS, row.migration_name, 'migration.sql'));
    expect(row).toMatchObject({ checksum: createHash('sha256').update(sql).digest('hex'), applied_steps_count: 1, logs: null, rolled_back_at: null });
    expect(row.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(row.finished_at).toBeInstanceOf(Date);
    expect(row.finished_at!.getTime()).toBeGreaterThanOrEqual(row.started_at.getTime());
  }

  const second = await applyMigrations(client, MIGRATIONS);
  expect(second).toEqual({ applied: [], alreadyApplied: NAMES, checksumMismatches: [] });
  expect(await rowsOf(client)).toEqual(rows);
});

test('a migration edited after it was applied is reported in checksumMismatches and not applied again', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-pg-migrations-'));
  fs.cpSync(MIGRATIONS, dir, { recursive: true });
  const client = await connect(await fresh());
  await applyMigrations(client, dir);
  const edited = NAMES[1];
  fs.appendFileSync(path.join(dir, edited, 'migration.sql'), '-- edited afterwards\n');
  expect(await applyMigrations(client, dir)).toEqual({ applied: [], alreadyApplied: NAMES, checksumMismatches: [edited] });
});

test('a failed migration is rolled back and recorded; later starts refuse with instructions until it is resolved', async () => {
  const dir = folder({
    '001_ok': 'CREATE TABLE "A" ("id" TEXT NOT NULL PRIMARY KEY);\n',
    '002_bad': 'CREATE TABLE "B" ("id" TEXT);\nCREATE TABLE "A" ("id" TEXT);\n',
  });
  const client = await connect(await fresh());
  const failure = await applyMigrations(client, dir).catch((e: unknown) => e);
  expect(failure).toBeInstanceOf(MigrationError);
  expect((failure as Error).message).toMatch(/^migration 002_bad failed: relation "A" already exists$/);
  // The migration's own transaction rolled back: B does not exist.
  expect((await client.query(`SELECT to_regclass('"B"') AS t`)).rows[0].t).toBeNull();
  const bad = (await rowsOf(client)).find((r) => r.migration_name === '002_bad')!;
  expect(bad).toMatchObject({ finished_at: null, rolled_back_at: null, applied_steps_count: 0, logs: expect.stringMatching(/relation "A" already exists/) });

  // The next start applies nothing, not even a new migration after it, and says what to do.
  fs.mkdirSync(path.join(dir, '003_next'));
  fs.writeFileSync(path.join(dir, '003_next', 'migration.sql'), 'CREATE TABLE "C" ("id" TEXT);\n');
  const again = await applyMigrations(client, dir).catch((e: unknown) => e);
  expect(String((again as Error).message)).toMatch(/migration 002_bad failed earlier and was not rolled back.*prisma migrate resolve --rolled-back 002_bad/);
  expect((await client.query(`SELECT to_regclass('"C"') AS t`)).rows[0].t).toBeNull();

  // Resolved as Prisma's CLI would (rolled_back_at set) and fixed: it is applied again, then what follows.
  await client.query(`UPDATE "_prisma_migrations" SET rolled_back_at = now() WHERE migration_name = '002_bad'`);
  fs.writeFileSync(path.join(dir, '002_bad', 'migration.sql'), 'CREATE TABLE "B" ("id" TEXT);\n');
  expect(await applyMigrations(client, dir)).toEqual({ applied: ['002_bad', '003_next'], alreadyApplied: ['001_ok'], checksumMismatches: [] });
});

test('npm run db:migrate on PostgreSQL: refuses a database with a failed migration (exit 1, the instructions), never prints the password', async () => {
  expect(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts['db:migrate']).toMatch(/node dist\/server\/store\/migrate-cli\.js$/);
  const db = await fresh();
  const { url, password } = withPassword(db.url);
  const first = await migrateCli(url);
  expect(first.code).toBe(0);
  expect(JSON.parse(first.stdout)).toMatchObject({ database: expect.stringContaining(':***@'), applied: NAMES });
  const client = await connect(db);
  await client.query(`INSERT INTO "_prisma_migrations" (id, checksum, migration_name, applied_steps_count) VALUES ('x', 'y', '99990101000000_broken', 0)`);
  const refused = await migrateCli(url);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(/migration 99990101000000_broken failed earlier and was not rolled back.*prisma migrate resolve --rolled-back 99990101000000_broken/);

  // An unreachable server: the message names the database, password masked.
  const nowhere = new URL(url);
  nowhere.port = '1';
  const unreachable = await migrateCli(nowhere.toString(), { DB_STARTUP_WAIT_MS: '0' });
  expect(unreachable.code).toBe(1);
  expect(unreachable.stderr).toContain(`cannot reach the database DATABASE_URL=${nowhere.toString().replace(`:${encodeURIComponent(password)}@`, ':***@')}`);
  for (const e of [first, refused, unreachable]) expect(e.stdout + e.stderr).not.toContain(password);
}, 60_000);

test('a database of the schema before stored sizes migrates: old rows get their length() as size and keep everything else', async () => {
  // The migrations before 20261208000000_stored_sizes, as a database that ran them holds them (same checksums).
  const before = folder(Object.fromEntries(listMigrations(MIGRATIONS).filter((m) => m.name < '20261208000000_stored_sizes').map((m) => [m.name, m.sql])));
  const client = await connect(await fresh());
  await applyMigrations(client, before);
  await client.query(`INSERT INTO "User" ("id") VALUES ('u')`);
  await client.query(`INSERT INTO "Thread" ("id", "userId", "updatedAt") VALUES ('t', 'u', now())`);
  await client.query(`INSERT INTO "Run" ("id", "threadId", "userId", "agentName", "input", "requestId") VALUES ('r', 't', 'u', 'a', '{}', 'q')`);
  // 'é' is 2 bytes, '🙂' 4 bytes and 2 UTF-16 units: one character each to length(), the measure the cut used.
  for (const content of ['héllo 🙂', 'x'.repeat(70_000)]) await client.query(`INSERT INTO "Message" ("threadId", "runId", "role", "content") VALUES ('t', 'r', 'user', $1)`, [content]);
  for (const [seq, payload] of ['{"text":"héllo 🙂"}', JSON.stringify({ text: 'e'.repeat(70_000) })].entries()) {
    await client.query(`INSERT INTO "RunEvent" ("id", "runId", "seq", "type", "payload", "timestamp") VALUES ($1, 'r', $2, 'partial_result', $3, now())`, [`e${seq}`, seq + 1, payload]);
  }
  const rowsOf = async (table: string) => (await client.query(`SELECT * FROM "${table}" ORDER BY "id"`)).rows as Record<string, unknown>[];
  const [messages, events] = [await rowsOf('Message'), await rowsOf('RunEvent')];

  expect((await applyMigrations(client, MIGRATIONS)).applied).toEqual(['20261208000000_stored_sizes', '20261209000000_user_storage']);
  // What the user stores is counted once, in bytes (UTF-8): 11 + 70,000 of messages, 22 + 70,011 of events.
  expect((await client.query('SELECT "userId", "bytes"::int AS "bytes" FROM "UserStorage"')).rows).toEqual([{ userId: 'u', bytes: 140_044 }]);
  expect(await rowsOf('Message')).toEqual(messages.map((m, i) => ({ ...m, size: [7, 70_000][i] })));
  expect(await rowsOf('RunEvent')).toEqual(events.map((e, i) => ({ ...e, size: [18, 70_011][i] })));
  // A row written without it (a node older than the column, during a rolling upgrade) still inserts, measured by
  // the migration's trigger (postgresql/old-node-sizes.test.ts: events too).
  await client.query(`INSERT INTO "Message" ("threadId", "role", "content") VALUES ('t', 'user', 'old node')`);
  expect((await client.query(`SELECT "size" FROM "Message" WHERE "content" = 'old node'`)).rows).toEqual([{ size: 8 }]);
});
