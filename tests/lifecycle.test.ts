/**
 * Start-up and shutdown: configuration errors are clear, SIGTERM drains, and runs a dead process left
 * behind get their terminal event (running) or run after all (queued) at the next start.
 */
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { FIXTURE_AGENTS, runServerOnce, startServer } from './helpers/server';
import { UserClient, httpCall, terminal } from './helpers/client';

test.each([
  [{ CELLS: 'many' }, /CELLS: .*number/i],
  [{ PORT: '70000' }, /PORT/],
  [{ RUN_TIMEOUT_MS: '-1' }, /RUN_TIMEOUT_MS/],
  [{ DATABASE_URL: 'postgres://x' }, /DATABASE_URL: must be a SQLite URL/],
  [{ NODE_ENV: 'production' }, /AUTH_JWT_SECRET: required when NODE_ENV=production/],
  [{ NODE_ENV: 'production', AUTH_JWT_SECRET: 'x'.repeat(32), AUTH_DEV_LOGIN: '1' }, /AUTH_DEV_LOGIN: refused when NODE_ENV=production/],
  [{ AUTH_JWT_SECRET: 'short' }, /AUTH_JWT_SECRET: must be at least 16 characters/],
  [{ DB_SYNCHRONOUS: 'sometimes' }, /DB_SYNCHRONOUS/],
  [{ WORKER_DB_WARMUP: 'soon' }, /WORKER_DB_WARMUP/],
  [{ CPU_DEMOTE_AFTER_MS: '-5' }, /CPU_DEMOTE_AFTER_MS/],
])('invalid configuration %j is refused at start-up with a clear message', async (env, message) => {
  const { code, stderr } = await runServerOnce(env as Record<string, string>);
  expect(code).toBe(2);
  expect(stderr).toMatch(message);
});

test('a broken agent module stops start-up with a message naming it', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-agents-'));
  fs.writeFileSync(path.join(dir, 'not-a-class.mjs'), 'export default 42;\n');
  const { code, stderr } = await runServerOnce({ AGENTS_DIR: dir });
  expect(code).toBe(1);
  expect(stderr).toMatch(/not-a-class\.mjs must default-export a class with an execute\(ctx\) method/);
});

test('SIGTERM lets running runs finish within the grace period, then exits 0', async () => {
  const server = await startServer({ ENABLE_CHAOS_AGENTS: '1', SHUTDOWN_GRACE_MS: '5000' });
  const u = await UserClient.connect(server.url, 'graceful');
  const { run_id } = await u.start({ agent: 'chaos', input: { mode: 'slow', text: 's', ms: 700 } });
  await u.waitForEvent(run_id, 'agent_started');
  const shutdown = new Promise((resolve) => u.socket.once('server_shutdown', resolve));
  const exited = server.stop('SIGTERM');
  const end = terminal(await u.waitForRun(run_id));
  expect(end.payload).toMatchObject({ status: 'completed', final_response: 'slept 700 ms' });
  await shutdown;
  expect(await exited).toBe(0);
  u.close();
});

test('SIGTERM cancels runs still going after the grace period, with their terminal events', async () => {
  const server = await startServer({ ENABLE_CHAOS_AGENTS: '1', SHUTDOWN_GRACE_MS: '300' });
  const u = await UserClient.connect(server.url, 'impatient');
  const runs = await Promise.all(['hang', 'hang_async'].map((mode) => u.start({ agent: 'chaos', input: { mode, text: mode } })));
  await Promise.all(runs.map((r) => u.waitForEvent(r.run_id, 'agent_started')));
  const exited = server.stop('SIGTERM');
  for (const r of runs) expect(terminal(await u.waitForRun(r.run_id)).payload).toMatchObject({ status: 'cancelled', error: { code: 'CANCELLED' } });
  expect(await exited).toBe(0);
  u.close();
  // Persisted, not only sent: a new process on the same database serves the same log.
  const again = await startServer({}, { dir: server.dir });
  const c = await UserClient.connect(again.url, 'impatient');
  for (const r of runs) {
    const log = await c.http('GET', `/v1/runs/${r.run_id}/events`);
    expect(log.body.status).toBe('cancelled');
    expect(log.body.events.at(-1).type).toBe('agent_completed');
  }
  c.close();
  await again.stop();
});

test('after a crash of the whole node, running runs are failed with a terminal event and queued runs still run', async () => {
  const server = await startServer({ ENABLE_CHAOS_AGENTS: '1', CELLS: '1', THREADS_PER_CELL: '1' });
  const u = await UserClient.connect(server.url, 'crashy');
  const running = await u.start({ agent: 'chaos', input: { mode: 'slow', text: 's', ms: 30_000 } });
  await u.waitForEvent(running.run_id, 'agent_thinking');
  const queued = await u.start({ agent: 'echo', input: 'survivor' });
  await u.waitForEvent(queued.run_id, 'message_received');
  const seen = u.runEvents(running.run_id).length;
  await server.stop('SIGKILL');
  u.close();

  const again = await startServer({ ENABLE_CHAOS_AGENTS: '1', CELLS: '1', THREADS_PER_CELL: '1' }, { dir: server.dir });
  const c = await UserClient.connect(again.url, 'crashy');
  const dead = await c.http('GET', `/v1/runs/${running.run_id}/events`);
  expect(dead.body.status).toBe('failed');
  expect(dead.body.events.map((e: any) => e.seq)).toEqual(Array.from({ length: seen + 1 }, (_, i) => i + 1));
  expect(dead.body.events.at(-1)).toMatchObject({ type: 'agent_completed', payload: { status: 'failed', error: { code: 'WORKER_CRASHED' } } });
  let survivor: any;
  for (let i = 0; i < 100; i++) {
    survivor = (await c.http('GET', `/v1/runs/${queued.run_id}`)).body;
    if (survivor.status === 'completed') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(survivor).toMatchObject({ status: 'completed', result: 'survivor' });
  const log = await c.http('GET', `/v1/runs/${queued.run_id}/events`);
  expect(log.body.events.map((e: any) => e.seq)).toEqual(log.body.events.map((_: any, i: number) => i + 1));
  c.close();
  await again.stop();
});

test('dev login is refused when AUTH_DEV_LOGIN is off', async () => {
  const server = await startServer({ AUTH_DEV_LOGIN: '0' });
  const res = await httpCall(server.url, 'POST', '/v1/auth/dev-login', { user_id: 'x' });
  expect(res.status).toBe(403);
  expect(res.body.error.code).toBe('FORBIDDEN');
  await server.stop();
});

test('without AUTH_JWT_SECRET a development secret is kept beside the database', async () => {
  const server = await startServer({ AUTH_JWT_SECRET: '' });
  const token = (await httpCall(server.url, 'POST', '/v1/auth/dev-login', { user_id: 'dev' })).body.token;
  expect(fs.existsSync(path.join(server.dir, '.dev-jwt-secret'))).toBe(true);
  await server.stop();
  const again = await startServer({ AUTH_JWT_SECRET: '' }, { dir: server.dir });
  expect((await httpCall(again.url, 'GET', '/v1/threads', undefined, token)).status).toBe(200);
  await again.stop();
});

void FIXTURE_AGENTS;
