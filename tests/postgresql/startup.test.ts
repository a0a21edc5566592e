/**
 * Starting on PostgreSQL when the database is not there yet: a server that never answers ends the start with one
 * clear line naming DATABASE_URL, its password masked; one that answers late is waited for, saying so; a database
 * of that name that does not exist is created; a fault that waiting cannot cure (an unknown role) ends the start
 * at once; one that leaves connections unanswered (a server too busy to answer within the connect timeout) is
 * waited for too. The password never appears in anything the process prints.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { migrationsFolder } from '../../server/store/migrations';
import { eventually, httpCall } from '../helpers/client';
import { testDatabase, type TestDatabase } from '../helpers/pg-database';
import { urlOf } from '../helpers/pg-scratch';
import { ROOT, startServer, type TestServer } from '../helpers/server';
import { runToExit, type Exit } from '../helpers/run-to-exit';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy';

const SECRET = 'pw-s3cret-never-printed';

/** Runs the server entry until it exits (or is killed after `timeoutMs`): its exit code, output and duration. */
function runOnce(env: Record<string, string>, timeoutMs = 60_000): Promise<Exit> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-test-'));
  // TMPDIR: the test run's folder, removed with it: a front launches its cells (and their scratch root, which it
  // keeps when it ends) before it reaches the database.
  return runToExit(path.join(ROOT, 'dist/server/main.js'), [], { cwd: dir, env: { PATH: process.env.PATH ?? '', TMPDIR: os.tmpdir(), PORT: '0', AUTH_JWT_SECRET: 'test-secret-test-secret-test-secret', ...env }, timeoutMs });
}

/** A port where nothing listens (taken, then given back). */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

const logLines = (stdout: string) => stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);

test('nothing listening: the start ends non-zero with one line naming DATABASE_URL, password masked', async () => {
  const port = await deadPort();
  const out = await runOnce({ DATABASE_URL: `postgresql://u:${SECRET}@127.0.0.1:${port}/atoll_t_never`, DB_STARTUP_WAIT_MS: '1500' });
  expect(out.code).not.toBe(0);
  expect(out.code).not.toBeNull(); // it ended by itself
  const lines = out.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toBe(
    `atoll: failed to start: cannot reach the database DATABASE_URL=postgresql://u:***@127.0.0.1:${port}/atoll_t_never: connect ECONNREFUSED 127.0.0.1:${port} (waited 1500 ms, DB_STARTUP_WAIT_MS)`,
  );
  // It said what it was waiting for while it waited, in the log too.
  expect(logLines(out.stdout).filter((l) => l.msg === 'waiting for the database (DATABASE_URL)').map((l) => l.database)).toContain(`postgresql://u:***@127.0.0.1:${port}/atoll_t_never`);
  expect(out.stdout + out.stderr).not.toContain(SECRET);
});

test('a fault that waiting cannot cure (an unknown role) ends the start at once, without the password', async () => {
  const admin = new URL(urlOf('postgres'));
  const out = await runOnce({ DATABASE_URL: `postgresql://atoll_no_such_role:${SECRET}@${admin.host}/atoll_t_never`, DB_STARTUP_WAIT_MS: '600000' });
  expect(out.code).toBe(1);
  expect(out.stderr.trim()).toMatch(/^atoll: failed to start: cannot reach the database DATABASE_URL=postgresql:\/\/atoll_no_such_role:\*\*\*@[^ ]+\/atoll_t_never: .*atoll_no_such_role/);
  expect(out.stderr.trim().split('\n')).toHaveLength(1);
  expect(out.ms).toBeLessThan(30_000); // not the ten minutes it was allowed to wait
  expect(out.stdout + out.stderr).not.toContain(SECRET);
});

/** A scratch database behind a TCP proxy for the describe block, and the server a test starts on it; all removed after. */
function behindProxy(what: string, options: { create?: boolean } = {}) {
  const at = {} as { proxy: TcpProxy; db: TestDatabase; server?: TestServer };
  beforeAll(async () => {
    at.proxy = await startTcpProxy(5432);
    at.db = await testDatabase(what, options);
  });
  afterAll(async () => {
    await at.server?.stop();
    await at.proxy?.close();
    await at.db?.drop();
  });
  return at;
}

describe('a database that answers late, and does not exist yet', () => {
  const at = behindProxy('startup', { create: false });

  test('is waited for (saying so), then created and migrated; the server starts and is ready', async () => {
    const { proxy, db } = at;
    proxy.drop();
    const url = new URL(db.urlVia(proxy.port));
    url.password = SECRET; // trust authentication takes any password; none may be printed
    const masked = url.toString().replace(SECRET, '***');
    // Refused until the server has come knocking a few times (about two seconds of its backoff), then let through.
    const opening = eventually(() => proxy.refused >= 4, 60_000, 20).then((ok) => (proxy.restore(), ok));
    const server = (at.server = await startServer({ DATABASE_URL: url.toString(), DB_STARTUP_WAIT_MS: '60000' }));
    expect(await opening).toBe(true);
    const waiting = server.logs.filter((l) => l.msg === 'waiting for the database (DATABASE_URL)');
    expect(waiting.length).toBeGreaterThanOrEqual(1);
    expect(waiting[0]).toMatchObject({ level: 40, database: masked });
    expect(waiting[0]!.reason).toEqual(expect.any(String));
    expect(server.logs.find((l) => l.msg === 'database migrated')).toBeDefined();
    const shipped = fs.readdirSync(migrationsFolder('postgresql'), { withFileTypes: true }).filter((d) => d.isDirectory()).length;
    expect(shipped).toBeGreaterThanOrEqual(5);
    expect(await db.query(`SELECT count(*)::int AS n FROM "_prisma_migrations" WHERE finished_at IS NOT NULL`)).toEqual([{ n: shipped }]);
    expect(await eventually(async () => (await httpCall(server.url, 'GET', '/readyz')).status === 200, 30_000, 50)).toBe(true);
    expect(server.stdout() + server.stderr()).not.toContain(SECRET);
  });
});

describe('a database that leaves connections unanswered at first', () => {
  const at = behindProxy('startup-held');

  test('is waited for: a connect that timed out is tried again, and the server starts', async () => {
    const { proxy, db } = at;
    proxy.hold();
    // Let through once the first connect has timed out and the server has come back for another try.
    const opening = eventually(() => proxy.heldSoFar >= 2, 60_000, 20).then((ok) => (proxy.restore(), ok));
    const server = (at.server = await startServer({ DATABASE_URL: db.urlVia(proxy.port), DB_STARTUP_WAIT_MS: '60000' }));
    expect(await opening).toBe(true);
    expect(server.logs.filter((l) => l.msg === 'waiting for the database (DATABASE_URL)').map((l) => l.reason)).toContain('timeout expired');
    expect(await eventually(async () => (await httpCall(server.url, 'GET', '/readyz')).status === 200, 30_000, 50)).toBe(true);
  });
});
