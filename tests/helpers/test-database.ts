/**
 * The store the tests run on and each test server's database on it. ATOLL_TEST_DATABASE=sqlite|postgresql
 * (default sqlite) is read once. On SQLite a test server's database is a file in its folder; on PostgreSQL it is
 * a database of its own on ATOLL_TEST_POSTGRESQL (default postgresql://postgres@127.0.0.1:5432), named after
 * the jest run, the test file and the server's folder, so a server restarted on the same folder finds the same
 * database. Atoll creates a missing database itself at start-up, so naming one is enough. The test
 * environment (database-environment.ts) drops a file's databases once the file is done; the global teardown
 * sweeps whatever a crashed file left of this run.
 */
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';

export type TestStore = 'sqlite' | 'postgresql';

function readStore(value: string | undefined): TestStore {
  if (value === undefined || value === '' || value === 'sqlite') return 'sqlite';
  if (value === 'postgresql') return 'postgresql';
  throw new Error(`ATOLL_TEST_DATABASE must be sqlite or postgresql (got ${JSON.stringify(value)})`);
}

export const TEST_STORE: TestStore = readStore(process.env.ATOLL_TEST_DATABASE);

/** The PostgreSQL server the PostgreSQL pass uses, without a database name. */
export const TEST_POSTGRESQL_SERVER = (process.env.ATOLL_TEST_POSTGRESQL || 'postgresql://postgres@127.0.0.1:5432').replace(/\/+$/, '');

/** Every test database's name starts with this (and nothing else's should). */
export const TEST_DATABASE_PREFIX = 'atoll_t_';

/** A fresh id for one jest run (the global setup puts it in ATOLL_TEST_RUN_ID, which every worker inherits). */
export function newRunId(): string {
  return randomBytes(4).toString('hex');
}

/** This jest run's id; outside a run started by the project's configs, this process's own. */
function runId(): string {
  return (process.env.ATOLL_TEST_RUN_ID || `p${process.pid}`).toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 12);
}

const shortHash = (text: string, chars: number) => createHash('sha256').update(text).digest('hex').slice(0, chars);

/** The prefix of every database of this jest run. */
export function runDatabasePrefix(): string {
  return `${TEST_DATABASE_PREFIX}${runId()}_`;
}

/** The prefix of every database a test file makes in this run. */
export function fileDatabasePrefix(testPath: string): string {
  return `${runDatabasePrefix()}${shortHash(path.resolve(testPath), 6)}_`;
}

/** The test file jest is running in this process, or this script's path outside jest. */
function currentTestPath(): string {
  const state = typeof expect === 'undefined' ? undefined : (expect.getState() as { testPath?: string });
  return state?.testPath ?? process.argv[1] ?? 'unknown';
}

/** The PostgreSQL URL of the database named `name` on the test server. */
export function postgresqlUrl(name: string): string {
  return `${TEST_POSTGRESQL_SERVER}/${name}`;
}

/** The DATABASE_URL of a test server whose folder is `dir`: a database of its own (the same one for the same folder). */
export function testDatabaseUrl(dir: string): string {
  if (TEST_STORE === 'sqlite') return `file:${path.join(dir, 'atoll.db')}`;
  const name = `${fileDatabasePrefix(currentTestPath())}${shortHash(path.resolve(dir), 12)}`;
  if (name.length > 63) throw new Error(`test database name too long for PostgreSQL: ${name}`);
  return postgresqlUrl(name);
}

/**
 * The database connections a test server's front holds (the atoll_db_connections gauge, process="front"):
 * SQLite's read and write connections, or PostgreSQL's DB_POOL_SIZE (4, which tests leave alone) plus its write
 * connection and the node lock's (a single node: server/store/postgresql/node-lock.ts).
 */
export const FRONT_DB_CONNECTIONS = TEST_STORE === 'sqlite' ? 2 : 4 + 1 + 1;

/** Where a server on folder `dir` keeps its development-only files (the development JWT secret). */
export function testStateDir(dir: string): string {
  return TEST_STORE === 'sqlite' ? dir : path.join(dir, 'data');
}

/** `?` placeholders become `$1`, `$2`… (outside quoted text), so one SQL text serves both stores. */
function numberedPlaceholders(sql: string): string {
  let n = 0;
  return sql.replace(/'(?:[^']|'')*'|"(?:[^"]|"")*"|\?/g, (m) => (m === '?' ? `$${++n}` : m));
}

// COUNT(*) and other int8 values as numbers (pg's default is a string), as better-sqlite3 gives them.
const pgTypes = { getTypeParser: ((oid: number, format?: 'text' | 'binary') => (oid === 20 ? Number : pg.types.getTypeParser(oid, format as 'text'))) as typeof pg.types.getTypeParser };

/**
 * Runs one statement on a test database (a server folder, or a DATABASE_URL) and returns its rows, on either
 * store: write `?` placeholders and SQL both accept (quoted identifiers, CAST). Integers come back as numbers
 * on both; timestamps as SQLite's text or PostgreSQL's Date.
 */
export async function queryTestDatabase<R = Record<string, unknown>>(dirOrUrl: string, sql: string, params: unknown[] = []): Promise<R[]> {
  const url = /^(file:|postgres(ql)?:\/\/)/.test(dirOrUrl) ? dirOrUrl : testDatabaseUrl(dirOrUrl);
  if (url.startsWith('file:')) {
    const db = new Database(url.slice('file:'.length), { fileMustExist: true });
    try {
      const statement = db.prepare(sql);
      if (!statement.reader) {
        statement.run(...params);
        return [];
      }
      return statement.all(...params) as R[];
    } finally {
      db.close();
    }
  }
  const client = new pg.Client({ connectionString: url, types: pgTypes });
  await client.connect();
  try {
    return (await client.query(numberedPlaceholders(sql), params)).rows as R[];
  } finally {
    await client.end();
  }
}

/**
 * What the front counted for a user (UserStorage) and what its rows hold, in UTF-8 bytes (its events' payloads and its
 * threads' messages; octet_length on both databases, SQLite's since 3.43): equal after every write, undo and delete.
 */
export async function storedAndHeld(dirOrUrl: string, userId: string): Promise<{ counted: number; held: number }> {
  const [row] = await queryTestDatabase<{ counted: number | string; held: number | string }>(
    dirOrUrl,
    'SELECT coalesce((SELECT "bytes" FROM "UserStorage" WHERE "userId" = ?), 0) AS "counted", ' +
      '(SELECT coalesce(sum(octet_length(e."payload")), 0) FROM "RunEvent" AS e JOIN "Run" AS r ON r."id" = e."runId" WHERE r."userId" = ?) + ' +
      '(SELECT coalesce(sum(octet_length(m."content")), 0) FROM "Message" AS m JOIN "Thread" AS t ON t."id" = m."threadId" WHERE t."userId" = ?) AS "held"',
    [userId, userId, userId],
  );
  return { counted: Number(row!.counted), held: Number(row!.held) };
}

/** Drops every test database whose name starts with `prefix` (their connections are ended); returns their names. */
export async function dropTestDatabases(prefix: string): Promise<string[]> {
  if (!prefix.startsWith(TEST_DATABASE_PREFIX) || prefix.length <= TEST_DATABASE_PREFIX.length) throw new Error(`refusing to drop databases by the prefix ${prefix}`);
  const client = new pg.Client({ connectionString: postgresqlUrl('postgres') });
  await client.connect();
  try {
    const like = prefix.replace(/[\\%_]/g, (c) => `\\${c}`) + '%';
    const { rows } = await client.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datname LIKE $1', [like]);
    for (const { datname } of rows) await client.query(`DROP DATABASE IF EXISTS "${datname.replace(/"/g, '""')}" WITH (FORCE)`);
    return rows.map((r) => r.datname);
  } finally {
    await client.end();
  }
}
