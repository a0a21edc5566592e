/**
 * SIGTERM while the embedded SQLite's disk is still full (README: "A front stopped while the file still fails
 * makes one last attempt; what it cannot write then, the next start's recovery settles"). The drain waited for
 * every finished run's terminal write (drain.ts), which group-commit.ts keeps retrying until the disk takes it: the
 * front never reached that last attempt and never exited. Mounting a tmpfs takes root, as in disk-full.test.ts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { UserClient, eventually } from './helpers/client';
import { expectPersistedTerminal } from './helpers/run-checks';
import { FIXTURE_AGENTS, startServer, type TestServer } from './helpers/server';
import { canMount, fillDisk, mountSmallDisk, type SmallDisk } from './helpers/small-disk';

const maybe = canMount ? test : test.skip;

let disk: SmallDisk | undefined;
let server: TestServer | undefined;
let user: UserClient | undefined;

afterAll(async () => {
  user?.close();
  if (server && server.proc.exitCode === null && server.proc.signalCode === null) await server.stop('SIGKILL');
  disk?.remove();
});

maybe('SIGTERM with the disk still full: the front makes its last attempt and exits; the next start settles the run', async () => {
  disk = mountSmallDisk('atoll-disk-full-stop-', 16);
  const dir = disk.dir;
  const env = { DATABASE_URL: `file:${path.join(dir, 'atoll.db')}`, AGENTS_DIR: FIXTURE_AGENTS, CELLS: '1', THREADS_PER_CELL: '2', SHUTDOWN_GRACE_MS: '1000' };
  server = await startServer(env);
  user = await UserClient.connect(server.url, 'disk-full-stop');
  // Streams ~2 KB every 50 ms for 20 s: its events meet the full disk, and SIGTERM comes while it runs.
  const { run_id } = await user.start({ agent: 'streamer', input: { text: 'x', parts: 400, delay: 50, pad: 2000 } });
  expect(await eventually(() => user!.runEvents(run_id).some((e) => e.type === 'agent_started'), 30_000, 20)).toBe(true);
  const filler = path.join(dir, 'filler');
  fillDisk(filler);
  const kept = 'the database cannot write (storage failing); requests fail with DB_UNAVAILABLE, acknowledged writes are kept and retried';
  expect(await eventually(() => server!.logs.some((l) => l.msg === kept), 30_000, 20)).toBe(true);

  // Grace 1 s, the stop of the run a few s, the database's last attempt: far under 30 s. Before, it never exited.
  const exited = await Promise.race([server.stop(), new Promise<'hung'>((r) => setTimeout(() => r('hung'), 30_000))]);
  expect(exited).toBe(0);
  user.close();
  user = undefined;

  // Space back: the next start's recovery ends the run, with one terminal event, last.
  fs.rmSync(filler);
  server = await startServer(env);
  user = await UserClient.connect(server.url, 'disk-full-stop');
  const terminal = await eventually(async () => (await expectPersistedTerminal(user!, run_id).catch(() => null)) !== null, 30_000, 100);
  expect(terminal).toBe(true);
  expect(await server.stop()).toBe(0);
  server = undefined;
}, 120_000);
