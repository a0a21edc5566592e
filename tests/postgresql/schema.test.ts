/**
 * PostgreSQL's hand-written migrations vs the Prisma schema: a database migrated by
 * server/store/postgresql/apply-migrations.ts holds exactly the tables, columns (type, nullability, default),
 * primary keys, indexes (Prisma's names, columns in order, uniqueness) and foreign keys (referential actions)
 * that Prisma's own migrate would create from prisma/postgresql/ (the shared models), and nothing else. The
 * expectation is read from the schema (tests/helpers/prisma-schema.ts, as the SQLite test does), the actual from
 * pg_catalog, and both are compared as one description, so a deliberately wrong migration is caught (tested).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { createdDatabase, type ScratchDatabase } from '../helpers/pg-scratch';
import { readSchema, schemaText, type Model, type ReferentialAction } from '../helpers/prisma-schema';
import { ROOT } from '../helpers/server';
import { listMigrations, migrationsFolder } from '../../server/store/migrations';
import { applyMigrations } from '../../server/store/postgresql/apply-migrations';

const MIGRATIONS = migrationsFolder('postgresql');

interface Table {
  columns: Record<string, { type: string; nullable: boolean; default: string | null }>;
  primaryKey: { name: string; columns: string[] } | null;
  /** Every index but the primary key's, by name. */
  indexes: Record<string, { columns: string[]; unique: boolean; method: string; predicate: string | null }>;
  foreignKeys: Record<string, { columns: string[]; references: string; referencedColumns: string[]; onDelete: ReferentialAction; onUpdate: ReferentialAction }>;
  /** Constraints other than primary and foreign keys (CHECK, UNIQUE constraints): Prisma writes none. */
  otherConstraints: Record<string, string>;
}
type Database = Record<string, Table>;

/** Prisma's PostgreSQL column types for the scalar types the models may use. */
const PG_TYPES: Record<string, string> = {
  String: 'TEXT',
  Int: 'INTEGER',
  BigInt: 'BIGINT',
  Float: 'DOUBLE PRECISION',
  Decimal: 'DECIMAL(65,30)',
  Boolean: 'BOOLEAN',
  DateTime: 'TIMESTAMP(3)',
  Json: 'JSONB',
  Bytes: 'BYTEA',
};

/** The default PostgreSQL holds for a field, as pg_get_expr prints it; null where Prisma fills it in itself. */
function pgDefault(model: string, field: Model['fields'][number]): string | null {
  const d = field.default;
  if (d === null || /^(uuid|cuid|nanoid|ulid)\(.*\)$/.test(d)) return null;
  if (d === 'autoincrement()') return `nextval('"${model}_${field.name}_seq"'::regclass)`; // SERIAL
  if (d === 'now()') return 'CURRENT_TIMESTAMP';
  const text = /^"(.*)"$/.exec(d);
  if (text) return `'${text[1].replace(/'/g, "''")}'::text`;
  if (/^(-?\d+(\.\d+)?|true|false)$/.test(d)) return d;
  throw new Error(`${model}.${field.name}: no PostgreSQL default known for @default(${d})`);
}

/** What Prisma's migrate would create from these models. */
function expected(models: Model[]): Database {
  const db: Database = {};
  for (const m of models) {
    db[m.name] = {
      columns: Object.fromEntries(
        m.fields.map((f) => {
          const type = PG_TYPES[f.type];
          if (!type) throw new Error(`${m.name}.${f.name}: no PostgreSQL type known for ${f.type}`);
          return [f.name, { type, nullable: f.optional, default: pgDefault(m.name, f) }];
        }),
      ),
      primaryKey: m.primaryKey.length ? { name: `${m.name}_pkey`, columns: m.primaryKey } : null,
      indexes: Object.fromEntries(m.indexes.map((i) => [i.name, { columns: i.columns, unique: i.unique, method: 'btree', predicate: null }])),
      foreignKeys: Object.fromEntries(m.foreignKeys.map(({ name, ...fk }) => [name, fk])),
      otherConstraints: {},
    };
  }
  return db;
}

const ACTION: Record<string, ReferentialAction> = { a: 'NO ACTION', r: 'RESTRICT', c: 'CASCADE', n: 'SET NULL', d: 'SET DEFAULT' };
/** format_type's spelling → Prisma's DDL spelling (timestamp(3) without time zone → TIMESTAMP(3)). */
const ddlType = (t: string) => t.toUpperCase().replace(/ WITHOUT TIME ZONE$/, '').replace(/^NUMERIC/, 'DECIMAL');
const COLUMNS_OF = (key: string, rel: string) =>
  `ARRAY(SELECT a.attname::text FROM unnest(${key}::int2[]) WITH ORDINALITY AS k(attnum, ord) JOIN pg_attribute a ON a.attrelid = ${rel} AND a.attnum = k.attnum ORDER BY k.ord)`;

/** What the database holds, from pg_catalog (the public schema, `_prisma_migrations` aside). */
async function actual(client: pg.Client): Promise<Database> {
  const db: Database = {};
  const tables = await client.query<{ name: string }>(
    `SELECT relname AS name FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') AND relname <> '_prisma_migrations'`,
  );
  for (const { name } of tables.rows) db[name] = { columns: {}, primaryKey: null, indexes: {}, foreignKeys: {}, otherConstraints: {} };
  const columns = await client.query<{ table: string; column: string; type: string; notnull: boolean; default: string | null }>(
    `SELECT c.relname AS table, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull, pg_get_expr(d.adbin, d.adrelid) AS default
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped`,
  );
  for (const c of columns.rows) if (db[c.table]) db[c.table].columns[c.column] = { type: ddlType(c.type), nullable: !c.notnull, default: c.default };
  const indexes = await client.query<{ table: string; name: string; unique: boolean; primary: boolean; method: string; predicate: string | null; columns: string[] }>(
    `SELECT t.relname AS table, i.relname AS name, x.indisunique AS unique, x.indisprimary AS primary, am.amname AS method,
            pg_get_expr(x.indpred, x.indrelid) AS predicate, ${COLUMNS_OF('x.indkey', 'x.indrelid')} AS columns
     FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid JOIN pg_am am ON am.oid = i.relam
     WHERE t.relnamespace = 'public'::regnamespace`,
  );
  for (const i of indexes.rows) {
    if (!db[i.table]) continue;
    // An expression index has fewer named columns than keys: it then differs from the schema's.
    if (i.primary) db[i.table].primaryKey = { name: i.name, columns: i.columns };
    else db[i.table].indexes[i.name] = { columns: i.columns, unique: i.unique, method: i.method, predicate: i.predicate };
  }
  const constraints = await client.query<{ table: string; name: string; type: string; references: string | null; ondelete: string; onupdate: string; columns: string[]; referenced: string[] }>(
    `SELECT t.relname AS table, c.conname AS name, c.contype AS type, r.relname AS references, c.confdeltype AS ondelete, c.confupdtype AS onupdate,
            ${COLUMNS_OF('c.conkey', 'c.conrelid')} AS columns, ${COLUMNS_OF('c.confkey', 'c.confrelid')} AS referenced
     FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid LEFT JOIN pg_class r ON r.oid = c.confrelid
     WHERE c.connamespace = 'public'::regnamespace`,
  );
  for (const c of constraints.rows) {
    if (!db[c.table] || c.type === 'p') continue;
    if (c.type === 'f') db[c.table].foreignKeys[c.name] = { columns: c.columns, references: c.references!, referencedColumns: c.referenced, onDelete: ACTION[c.ondelete], onUpdate: ACTION[c.onupdate] };
    else db[c.table].otherConstraints[c.name] = c.type;
  }
  return db;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Every difference, one line each, named by its path (Run.indexes.Run_status_idx: missing). */
function differences(want: unknown, got: unknown, at = ''): string[] {
  if (isRecord(want) && isRecord(got)) {
    const keys = [...new Set([...Object.keys(want), ...Object.keys(got)])].sort();
    return keys.flatMap((k) => (!(k in got) ? [`${at}${k}: missing`] : !(k in want) ? [`${at}${k}: not in the schema`] : differences(want[k], got[k], `${at}${k}.`)));
  }
  return JSON.stringify(want) === JSON.stringify(got) ? [] : [`${at.slice(0, -1)}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`];
}

const databases: ScratchDatabase[] = [];
const clients: pg.Client[] = [];

/** A fresh database migrated from `dir`, and a client on it. */
async function migrated(dir: string): Promise<pg.Client> {
  const db = await createdDatabase();
  databases.push(db);
  const client = await db.connect();
  clients.push(client);
  await applyMigrations(client, dir);
  return client;
}

let good: pg.Client;
beforeAll(async () => {
  good = await migrated(MIGRATIONS);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  await Promise.all(databases.map((d) => d.drop()));
});

const MODELS = readSchema(schemaText('postgresql'));

test('the migrated database holds exactly the tables, columns, keys and indexes that the Prisma schema declares', async () => {
  // The expectation is not vacuous: every model, and the details that are easy to get wrong by hand.
  const want = expected(MODELS);
  expect(Object.keys(want).sort()).toEqual(['Message', 'Node', 'QueueUser', 'Run', 'RunEvent', 'Thread', 'User', 'UserStorage']);
  expect(want.Message.columns.id).toEqual({ type: 'INTEGER', nullable: false, default: `nextval('"Message_id_seq"'::regclass)` });
  expect(want.Message.columns.status).toEqual({ type: 'TEXT', nullable: false, default: "'complete'::text" });
  expect(want.Run.columns.queuedAt).toEqual({ type: 'TIMESTAMP(3)', nullable: false, default: 'CURRENT_TIMESTAMP' });
  expect(want.Run.columns.id.default).toBeNull(); // uuid(): filled in by Prisma, not the database
  expect(want.Thread.columns.updatedAt).toEqual({ type: 'TIMESTAMP(3)', nullable: false, default: null });
  expect(want.Run.indexes.Run_userId_correlationId_key).toMatchObject({ columns: ['userId', 'correlationId'], unique: true });
  expect(want.RunEvent.foreignKeys.RunEvent_runId_fkey).toEqual({ columns: ['runId'], references: 'Run', referencedColumns: ['id'], onDelete: 'CASCADE', onUpdate: 'CASCADE' });

  expect(differences(want, await actual(good))).toEqual([]);
  // SERIAL: the sequence belongs to its column (it goes when the column goes).
  const serial = await good.query(`SELECT pg_get_serial_sequence('"Message"', 'id') AS seq`);
  expect(serial.rows[0].seq).toBe('public."Message_id_seq"');
});

test('a deliberately wrong migration is caught, each mistake named', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-pg-migrations-'));
  fs.cpSync(MIGRATIONS, dir, { recursive: true });
  const init = path.join(dir, '20261126000000_init', 'migration.sql');
  const replace = (file: string, from: string, to: string) => {
    const sql = fs.readFileSync(file, 'utf8');
    expect(sql).toContain(from);
    fs.writeFileSync(file, sql.replace(from, to));
  };
  replace(init, '    "title" TEXT,\n', ''); // a column dropped
  replace(init, '"seq" INTEGER NOT NULL', '"seq" BIGINT NOT NULL'); // a type
  replace(init, '"requestId" TEXT NOT NULL', '"requestId" TEXT'); // nullability
  replace(init, `"status" TEXT NOT NULL DEFAULT 'queued'`, `"status" TEXT NOT NULL DEFAULT 'new'`); // a default
  replace(init, '"queuedAt" TIMESTAMP(3) NOT NULL', '"queuedAt" TIMESTAMPTZ(3) NOT NULL'); // time zone
  replace(init, 'CREATE INDEX "Run_status_idx" ON "Run"("status");', ''); // an index missing
  replace(init, 'REFERENCES "Run"("id") ON DELETE CASCADE', 'REFERENCES "Run"("id") ON DELETE RESTRICT'); // no cascade
  const correlation = path.join(dir, '20261201000000_correlation_unique', 'migration.sql');
  replace(correlation, 'ON "Run"("userId", "correlationId")', 'ON "Run"("correlationId", "userId")'); // columns out of order
  const lookups = path.join(dir, '20261207000000_queue_lookups_by_key', 'migration.sql');
  replace(lookups, 'CREATE INDEX "Message_runId_id_idx"', 'CREATE INDEX "Message_run_idx"'); // not Prisma's name

  const client = await migrated(dir);
  expect(differences(expected(MODELS), await actual(client))).toEqual([
    'Message.indexes.Message_runId_id_idx: missing',
    'Message.indexes.Message_run_idx: not in the schema',
    'Run.columns.queuedAt.type: expected "TIMESTAMP(3)", got "TIMESTAMP(3) WITH TIME ZONE"',
    'Run.columns.requestId.nullable: expected false, got true',
    `Run.columns.status.default: expected "'queued'::text", got "'new'::text"`,
    'Run.indexes.Run_status_idx: missing',
    'Run.indexes.Run_userId_correlationId_key.columns: expected ["userId","correlationId"], got ["correlationId","userId"]',
    'RunEvent.columns.seq.type: expected "INTEGER", got "BIGINT"',
    'RunEvent.foreignKeys.RunEvent_runId_fkey.onDelete: expected "CASCADE", got "RESTRICT"',
    'Thread.columns.title: missing',
  ]);
  // And the other way round: what the schema adds, the migrations must add.
  const grown = readSchema(schemaText('postgresql').replace(/^(model Thread \{)$/m, '$1\n  archivedAt DateTime?\n  @@index([title])'));
  expect(differences(expected(grown), await actual(good))).toEqual(['Thread.columns.archivedAt: missing', 'Thread.indexes.Thread_title_idx: missing']);
});

test("PostgreSQL's schema folder is the shared models plus its own datasource; its migrations are locked to postgresql", () => {
  const dir = path.join(ROOT, 'prisma/postgresql');
  expect(fs.realpathSync(path.join(dir, 'models.prisma'))).toBe(fs.realpathSync(path.join(ROOT, 'prisma/models.prisma')));
  expect(schemaText('postgresql')).toMatch(/datasource db \{\s*provider = "postgresql"\s*\}/);
  expect(fs.readFileSync(path.join(MIGRATIONS, 'migration_lock.toml'), 'utf8')).toMatch(/^provider = "postgresql"$/m);
  expect(listMigrations(MIGRATIONS).map((m) => m.name)).toEqual(listMigrations(migrationsFolder('sqlite')).map((m) => m.name));
});
