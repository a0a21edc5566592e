/**
 * The embedded SQLite's disk fills up while runs stream and requests keep coming, then space comes back: the
 * database file on a tmpfs of 16 MiB of its own, filled by a file written until ENOSPC. What must hold, as for
 * PostgreSQL's outage (postgresql/outage.test.ts):
 * - every request refused meanwhile got DB_UNAVAILABLE (ack `retry_after_ms`, HTTP 503 + Retry-After), never
 *   INTERNAL, and left nothing;
 * - /readyz names the database while acknowledged writes wait for the disk;
 * - every run acknowledged, before or during, completes once space is back, with its whole event log (seq 1..n,
 *   one terminal event, last).
 * Before group-commit.ts kept acknowledged writes through storage failures, every refusal was INTERNAL and the
 * runs whose events or finish met the full disk never ended (4 of 57 in one try).
 * Mounting a tmpfs takes root (CI runs as root); where this process may not mount one, the test is skipped.
 */
import fs from 'node:fs';
import path from 'node:path';
import { UserClient, eventually, httpCall, sleep } from './helpers/client';
import { expectPersistedTerminal } from './helpers/run-checks';
import { FIXTURE_AGENTS, startServer, type TestServer } from './helpers/server';
import { canMount, fillDisk, mountSmallDisk, type SmallDisk } from './helpers/small-disk';

const maybe = canMount ? test : test.skip;

let disk: SmallDisk | undefined;
let dir: string;
let server: TestServer;
let user: UserClient;

beforeAll(async () => {
  if (!canMount) return;
  disk = mountSmallDisk('atoll-disk-full-', 16);
  dir = disk.dir;
  server = await startServer({ DATABASE_URL: `file:${path.join(dir, 'atoll.db')}`, AGENTS_DIR: FIXTURE_AGENTS, CELLS: '1', THREADS_PER_CELL: '4', RUN_TIMEOUT_MS: '120000' });
  user = await UserClient.connect(server.url, 'disk-full-user');
}, 60_000);
afterAll(async () => {
  user?.close();
  await server?.stop();
  disk?.remove();
});

maybe('the disk fills while runs stream: requests get DB_UNAVAILABLE, /readyz names the database, and every acknowledged run completes once space is back', async () => {
  const input = (text: string, parts: number) => ({ text, parts, delay: 50, pad: 2000 });
  // Runs under way when the disk fills: each writes an event of ~2 KB every 50 ms for 2 s.
  const acked: string[] = [];
  for (let i = 0; i < 4; i++) acked.push((await user.start({ agent: 'streamer', input: input(`before-${i}`, 40) })).run_id);
  expect(await eventually(() => acked.every((id) => user.runEvents(id).some((e) => e.type === 'agent_started')), 30_000, 20)).toBe(true);

  const filler = path.join(dir, 'filler');
  fillDisk(filler);
  const refused: { code: string; retry_after_ms?: number }[] = [];
  let notReady: { status: number; body: { failing: string[]; checks: { database: string } } } | null = null;
  // Requests keep coming until both a refusal and a /readyz naming the database were seen (bounded).
  for (let k = 0; k < 300 && (refused.length === 0 || notReady === null); k++) {
    const ack = await user.ack('start_agent', { agent: 'streamer', input: input(`during-${k}`, 3) });
    if (ack.error) refused.push(ack.error);
    else acked.push(ack.run_id);
    const ready = await httpCall(server.url, 'GET', '/readyz');
    if (ready.status === 503) notReady = ready;
    await sleep(20);
  }
  expect(refused.length).toBeGreaterThan(0);
  expect(refused.filter((e) => e.code !== 'DB_UNAVAILABLE' || !(Number(e.retry_after_ms) > 0))).toEqual([]);
  expect(notReady?.body.failing).toEqual(['database']);
  expect(notReady?.body.checks.database).toMatch(/^unreachable: acknowledged writes wait for the database file \(SQLITE_FULL\)$/);
  // Over HTTP too: 503 with Retry-After.
  const thread = await user.http('POST', '/v1/threads', {});
  expect([thread.status, thread.body.error?.code, thread.headers.get('retry-after')]).toEqual([503, 'DB_UNAVAILABLE', '2']);

  fs.rmSync(filler);
  for (const id of acked) {
    const events = await user.waitForRun(id, 60_000);
    expect([id, events.at(-1)?.type, events.at(-1)?.payload.status]).toEqual([id, 'agent_completed', 'completed']);
    await expectPersistedTerminal(user, id);
  }
  expect(await eventually(async () => (await httpCall(server.url, 'GET', '/readyz')).status === 200, 30_000, 50)).toBe(true);
  const after = await user.start({ agent: 'streamer', input: input('after', 3) });
  expect((await user.waitForRun(after.run_id)).at(-1)?.payload.status).toBe('completed');
  // Said once each way; no request failed as INTERNAL.
  const said = (msg: string) => server.logs.filter((l) => l.msg === msg).length;
  expect(said('the database cannot write (storage failing); requests fail with DB_UNAVAILABLE, acknowledged writes are kept and retried')).toBeGreaterThanOrEqual(1);
  expect(said('the database writes again; kept writes committed')).toBeGreaterThanOrEqual(1);
  expect(said('socket handler failed')).toBe(0);
  user.assertClean();
}, 240_000);
