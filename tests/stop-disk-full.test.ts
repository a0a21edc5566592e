/**
 * A run that ends while the SQLite disk is full: its terminal write is kept and retried until space comes back. A
 * stop of it (stop_agent) answers meanwhile, how it ended, rather than wait for the disk.
 */
import fs from 'node:fs';
import path from 'node:path';
import { UserClient, eventually } from './helpers/client';
import { FIXTURE_AGENTS, startServer, type TestServer } from './helpers/server';
import { canMount, fillDisk, mountSmallDisk, type SmallDisk } from './helpers/small-disk';

const maybe = canMount ? test : test.skip;
let disk: SmallDisk | undefined;
let server: TestServer;
let user: UserClient;

beforeAll(async () => {
  if (!canMount) return;
  disk = mountSmallDisk('atoll-stop-disk-full-', 16);
  server = await startServer({ DATABASE_URL: `file:${path.join(disk.dir, 'atoll.db')}`, AGENTS_DIR: FIXTURE_AGENTS, CELLS: '1', THREADS_PER_CELL: '2', RUN_TIMEOUT_MS: '120000' });
  user = await UserClient.connect(server.url, 'stop-disk-full-user');
}, 60_000);
afterAll(async () => {
  user?.close();
  await server?.stop();
  disk?.remove();
});

maybe('a stop of a run that ended while the disk is full answers at once, how it ended', async () => {
  const { run_id } = await user.start({ agent: 'streamer', input: { text: 'x', parts: 20, delay: 50, pad: 100 } });
  expect(await eventually(() => user.runEvents(run_id).some((e) => e.type === 'agent_started'), 30_000, 20)).toBe(true);
  const filler = path.join(disk!.dir, 'filler');
  fillDisk(filler);
  try {
    expect(await eventually(() => server.logs.some((l) => l.msg === 'run finished' && l.run_id === run_id), 30_000, 20)).toBe(true);
    const t0 = Date.now();
    const ack = await Promise.race([user.ack('stop_agent', { run_id }), new Promise((resolve) => setTimeout(resolve, 5000, 'no ack within 5 s'))]);
    console.log('stop_agent ack', JSON.stringify(ack), 'after', Date.now() - t0, 'ms');
    expect(ack).toEqual({ run_id, status: 'completed' });
  } finally {
    fs.rmSync(filler, { force: true });
  }
  const events = await user.waitForRun(run_id, 60_000);
  expect(events.at(-1)?.payload.status).toBe('completed');
}, 120_000);
