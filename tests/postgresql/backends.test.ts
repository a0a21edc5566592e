/**
 * Ending the backend of a connection given up on (server/store/postgresql/backends.ts), on a real PostgreSQL: what
 * it was executing is settled for good, a pid a newer backend took is left alone, and the answers the group commit
 * and the shared queue act on (ended, still alive, not ours to end).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createBackends } from '../../server/store/postgresql/backends';
import { testDatabase, type TestDatabase } from '../helpers/pg-database';

let db: TestDatabase;
let pool: pg.Pool;
const clients: pg.Client[] = [];
const backends = createBackends();

beforeAll(async () => {
  db = await testDatabase('backends');
  await db.query('CREATE TABLE note (id int PRIMARY KEY)');
  pool = new pg.Pool({ connectionString: db.url, max: 2 });
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  await pool?.end();
  await db?.drop();
});

async function connect(url = db.url): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => undefined);
  await c.connect();
  clients.push(c);
  return c;
}

test('a backend given up on is ended and gone once the answer comes: its open transaction rolled back', async () => {
  const c = await connect();
  const backend = await backends.of(c);
  expect(backend.pid).toBe((c as unknown as { processID: number }).processID);
  await c.query('BEGIN');
  await c.query('INSERT INTO note VALUES (1)');
  expect(await backends.end(pool, backend)).toBe('ended');
  // Gone already: the wait is over when the answer comes, not some time after.
  expect(await db.query('SELECT pid FROM pg_stat_activity WHERE pid = $1', [backend.pid])).toEqual([]);
  await expect(c.query('COMMIT')).rejects.toThrow();
  expect(await db.query('SELECT id FROM note')).toEqual([]);
  // Asked once per connection.
  const other = await connect();
  expect(await backends.of(other)).toBe(await backends.of(other));
});

test('a pid with another start time (a newer backend that took the pid) is left alone', async () => {
  const c = await connect();
  const { pid } = await backends.of(c);
  expect(await backends.end(pool, { pid, start: String(Date.parse('2000-01-01T00:00:00Z') * 1000) })).toBe('ended');
  await expect(c.query('SELECT 1 AS one')).resolves.toMatchObject({ rows: [{ one: 1 }] });
});

test('a process that pg_terminate_backend does not end (the checkpointer) is reported alive', async () => {
  const [checkpointer] = await db.query<{ pid: number; start: string }>(`SELECT pid, (extract(epoch FROM backend_start) * 1000000)::int8::text AS start FROM pg_stat_activity WHERE backend_type = 'checkpointer'`);
  expect(await backends.end(pool, checkpointer!)).toBe('alive');
});

test("another role's backend, which this role may not signal, is reported not-allowed, and left running", async () => {
  const roles = ['a', 'b'].map((r) => `atoll_t_role_${r}_${randomBytes(4).toString('hex')}`);
  for (const role of roles) await db.query(`CREATE ROLE ${role} LOGIN`);
  const asRole = (role: string) => {
    const u = new URL(db.url);
    u.username = role;
    return u.toString();
  };
  const other = new pg.Pool({ connectionString: asRole(roles[1]!), max: 1 });
  try {
    const c = await connect(asRole(roles[0]!));
    const backend = await backends.of(c);
    // Its start time hidden from this role: whether it is still that backend cannot be told.
    expect(await backends.end(other, backend)).toBe('not-allowed');
    // Seen, but this role may not signal it (pg_terminate_backend refuses).
    await db.query(`GRANT pg_read_all_stats TO ${roles[1]}`);
    expect(await backends.end(other, backend)).toBe('not-allowed');
    await expect(c.query('SELECT 1 AS one')).resolves.toMatchObject({ rows: [{ one: 1 }] });
    await c.end();
  } finally {
    await other.end();
    for (const role of roles) {
      await db.query('SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = $1', [role]);
      await db.query(`DROP ROLE ${role}`);
    }
  }
});
