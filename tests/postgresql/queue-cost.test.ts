/**
 * The shared queue's lookups cost the same however long the history, even with plans made on an empty database
 * (migration 20261207000000_queue_lookups_by_key). The queue's connections use generic plans, made once per
 * connection (WRITE_CONNECTION_OPTIONS); on a fresh database that is while the tables are empty, and the plans stay
 * until autovacuum's first ANALYZE. Before that migration, a claim then read every message ever written, and an
 * accept's check and a renewal's every run of the user or of the node (this test before it: a claim 51 → 1,216
 * buffers, an accept's check 6 → 380, a renewal's 4 → 748; after it: 56 → 98, 8 → 11, 3 → 5).
 *
 * Buffers (pages PostgreSQL touched: EXPLAIN's count, not a timing) of each statement on one connection whose plans
 * were made while the tables were empty, with a short history and with 20,000 more finished runs of the same user,
 * conversation and lease, before and after ANALYZE.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { migrationsFolder } from '../../server/store/migrations';
import { applyMigrations } from '../../server/store/postgresql/apply-migrations';
import { queueStatements } from '../../server/store/postgresql/cluster-store';
import { WRITE_CONNECTION_OPTIONS } from '../../server/store/postgresql/run-statements';
import { testDatabase, type TestDatabase } from '../helpers/pg-database';

const HISTORY = 20_000;
let db: TestDatabase;
let admin: pg.Client;
/** The queue's connection: its plans are made once, as the front's pools make them. */
let queue: pg.Client;
const lease = randomUUID();

beforeAll(async () => {
  db = await testDatabase('queue_cost');
  admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  await applyMigrations(admin, migrationsFolder('postgresql'));
  queue = new pg.Client({ connectionString: db.url, options: WRITE_CONNECTION_OPTIONS });
  await queue.connect();
  await admin.query(`INSERT INTO "Node" ("id", "nodeId", "startedAt", "expiresAt") VALUES ($1, 'node', now(), now() + interval '1 day')`, [lease]);
});
afterAll(async () => {
  await queue?.end();
  await admin?.end();
  await db?.drop();
});

let runs = 0;
/** A run of `user` in `thread` with its user message, as an accept writes them. */
async function addRun(user: string, thread: string, status: string, owner: string | null): Promise<void> {
  const id = `run-${++runs}`;
  await admin.query(`INSERT INTO "User" ("id") VALUES ($1) ON CONFLICT DO NOTHING`, [user]);
  await admin.query(`INSERT INTO "Thread" ("id", "userId", "updatedAt") VALUES ($1, $2, now()) ON CONFLICT DO NOTHING`, [thread, user]);
  await admin.query(
    `INSERT INTO "Run" ("id", "threadId", "userId", "agentName", "input", "requestId", "status", "queuedAt", "attempts", "owner") VALUES ($1, $2, $3, 'echo', '{}', $1, $4, now(), 0, $5)`,
    [id, thread, user, status, owner],
  );
  await admin.query(`INSERT INTO "Message" ("threadId", "runId", "role", "content") VALUES ($1, $2, 'user', 'hello')`, [thread, id]);
  await admin.query(`INSERT INTO "QueueUser" ("userId", "servedAt") VALUES ($1, now()) ON CONFLICT DO NOTHING`, [user]);
}

/** Each statement as the queue runs it: the claim and an accept's check are functions, the renewal's check a prepared statement. */
const STATEMENTS = {
  claim: () => ({ text: 'SELECT * FROM atoll_claim($1, $2, $3)', values: [lease, 4, 3] }),
  accept: () => ({ text: 'SELECT atoll_accept_check($1, $2, $3, $4) AS "busy"', values: ['alice', 'long', 100, false] }),
  renewal: () => {
    const q = queueStatements.stopsAsked([lease]);
    return { text: q.text, values: q.values! };
  },
};
type Name = keyof typeof STATEMENTS;

/** EXECUTE of the statement prepared as `name`, its values as literals (EXECUTE takes no bound parameters). */
const execute = (name: Name): string => `EXECUTE ${name}(${STATEMENTS[name]().values.map((v) => queue.escapeLiteral(String(v))).join(', ')})`;

/** Buffers one run of the statement touched (planning included, as the queue pays it), in a transaction rolled back. */
async function buffers(name: Name): Promise<number> {
  await queue.query('BEGIN');
  try {
    // The statement the queue sends, prepared on this connection: its generic plan is made once.
    const { rows } = await queue.query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${execute(name)}`);
    const plan = (rows[0] as { 'QUERY PLAN': [{ Plan: Record<string, number> }] })['QUERY PLAN'][0].Plan;
    return plan['Shared Hit Blocks'] + plan['Shared Read Blocks'];
  } finally {
    await queue.query('ROLLBACK');
  }
}

/** Each statement's buffers, measured twice: the second, once this connection's plans exist. */
async function measure(): Promise<Record<Name, number>> {
  const out = {} as Record<Name, number>;
  for (const name of Object.keys(STATEMENTS) as Name[]) {
    await buffers(name);
    out[name] = await buffers(name);
  }
  return out;
}

test('a claim, an accept check and a renewal read as much with 20,000 finished runs behind them as with none, planned on an empty database', async () => {
  for (const name of Object.keys(STATEMENTS) as Name[]) {
    await queue.query(`PREPARE ${name} AS ${STATEMENTS[name]().text}`);
    // Plans made while the tables are empty (a fresh database's first claims).
    await queue.query('BEGIN');
    await queue.query(execute(name));
    await queue.query('ROLLBACK');
  }
  await addRun('alice', 'long', 'running', lease);
  await addRun('alice', 'other', 'queued', null);
  const short = await measure();

  // alice's long conversation: 20,000 finished runs of hers, held by this lease, two messages each.
  await admin.query(
    `INSERT INTO "Run" ("id", "threadId", "userId", "agentName", "input", "requestId", "status", "queuedAt", "attempts", "owner")
     SELECT 'old-' || g, 'long', 'alice', 'echo', '{}', 'old-' || g, 'completed', now(), 1, $1 FROM generate_series(1, $2::int) AS g`,
    [lease, HISTORY],
  );
  await admin.query(
    `INSERT INTO "Message" ("threadId", "runId", "role", "content") SELECT 'long', 'old-' || g, r, 'x' FROM generate_series(1, $1::int) AS g, unnest(ARRAY['user', 'assistant']) AS r`,
    [HISTORY],
  );
  await addRun('alice', 'newest', 'queued', null);
  const long = await measure();
  await admin.query('ANALYZE');
  const analyzed = await measure();

  // A lookup that read the history would touch thousands of pages here (see the header).
  const names = Object.keys(STATEMENTS) as Name[];
  const grew = (after: Record<Name, number>) => names.filter((n) => after[n] > 2 * short[n] + 50).map((n) => `${n}: ${short[n]} → ${after[n]} buffers`);
  expect({ long: grew(long), analyzed: grew(analyzed) }).toEqual({ long: [], analyzed: [] });
  // The claim still claims: alice's oldest waiting run comes first, then the newest waits for her cap (3).
  const { rows } = await queue.query<{ id: string }>('SELECT "id" FROM atoll_claim($1, 4, 3)', [lease]);
  expect(rows.map((r) => r.id)).toEqual(['run-2']);
});
