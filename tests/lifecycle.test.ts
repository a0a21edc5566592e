/**
 * Start-up and shutdown: configuration errors are clear, SIGTERM drains (refusing new runs, keeping queued ones
 * for the next start), a run is on disk before its acknowledgement, and runs a dead process left behind get
 * their terminal event (running) or run after all (queued) at the next start.
 */
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { FIXTURE_AGENTS, runServerOnce, startServer, type TestServer } from './helpers/server';
import { testStateDir } from './helpers/test-database';
import { UserClient, eventually, httpCall, terminal } from './helpers/client';

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
  fs.chmodSync(dir, 0o755);
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

/** Servers a test started, stopped after it whatever happened (a failed assertion must not leave one running). */
const started: TestServer[] = [];
async function serve(env: Record<string, string>, options: { dir?: string } = {}): Promise<TestServer> {
  const server = await startServer(env, options);
  started.push(server);
  return server;
}
afterEach(async () => {
  await Promise.all(started.splice(0).map((s) => s.stop('SIGKILL')));
});

/** Polls a run over HTTP until it has its terminal status (a restarted server runs what it found queued). */
async function finishedRun(c: UserClient, runId: string, timeoutMs = 30_000): Promise<any> {
  let run: any;
  const ok = await eventually(async () => {
    run = (await c.http('GET', `/v1/runs/${runId}`)).body;
    return ['completed', 'failed', 'cancelled', 'timeout'].includes(run?.status);
  }, timeoutMs);
  if (!ok) throw new Error(`run ${runId} did not finish after the restart: ${JSON.stringify(run)}`);
  return run;
}

/** A run's durable log: seq 1..n, one message_received first, exactly one agent_started and one agent_completed, last. */
async function expectRanOnce(c: UserClient, runId: string): Promise<any[]> {
  const events = (await c.http('GET', `/v1/runs/${runId}/events`)).body.events as any[];
  expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
  expect(events[0].type).toBe('message_received');
  expect(events.filter((e) => e.type === 'message_received')).toHaveLength(1);
  expect(events.filter((e) => e.type === 'agent_started')).toHaveLength(1);
  expect(events.filter((e) => e.type === 'agent_completed')).toHaveLength(1);
  expect(events.at(-1).type).toBe('agent_completed');
  return events;
}

test('SIGTERM refuses new runs with SHUTTING_DOWN on the socket and over HTTP while it drains', async () => {
  const server = await serve({ ENABLE_CHAOS_AGENTS: '1', SHUTDOWN_GRACE_MS: '20000' });
  const u = await UserClient.connect(server.url, 'latecomer');
  // A run that keeps the drain going until the test has asked for new runs (then stopped by the test).
  const busy = await u.start({ agent: 'chaos', input: { mode: 'slow', text: 's', ms: 60_000 } });
  await u.waitForEvent(busy.run_id, 'agent_started');
  const exited = server.stop('SIGTERM');
  // The server logs 'shutting down' in the same turn as it starts draining.
  expect(await eventually(() => server.logs.some((l) => l.msg === 'shutting down'), 15_000, 20)).toBe(true);

  const refused = await u.ack('start_agent', { agent: 'echo', input: 'too late' });
  expect(refused).toMatchObject({ error: { code: 'SHUTTING_DOWN', retry_after_ms: expect.any(Number) } });
  const onThread = await u.ack('start_agent', { agent: 'echo', input: 'too late', thread_id: busy.thread_id });
  expect(onThread).toMatchObject({ error: { code: 'SHUTTING_DOWN' } });
  const http = await u.http('POST', `/v1/threads/${busy.thread_id}/runs`, { agent: 'echo', input: 'too late' });
  expect(http.status).toBe(503);
  expect(http.body.error.code).toBe('SHUTTING_DOWN');
  expect(Number(http.headers.get('retry-after'))).toBeGreaterThan(0);

  // Nothing was accepted: the thread holds only the busy run's message.
  expect(u.events.filter((e) => e.type === 'message_received').map((e) => e.run_id)).toEqual([busy.run_id]);
  await u.ack('stop_agent', { run_id: busy.run_id });
  expect(terminal(await u.waitForRun(busy.run_id)).payload.status).toBe('cancelled');
  expect(await exited).toBe(0);
  u.close();
  const again = await serve({}, { dir: server.dir });
  const c = await UserClient.connect(again.url, 'latecomer');
  const history = (await c.http('GET', `/v1/threads/${busy.thread_id}/messages`)).body.messages;
  expect(history.filter((m: any) => m.role === 'user').map((m: any) => m.content)).toEqual(['s']);
  c.close();
  await again.stop();
}, 60_000);

test('SIGTERM leaves queued runs queued; the next start runs each of them once, in order', async () => {
  const env = { ENABLE_CHAOS_AGENTS: '1', SHUTDOWN_GRACE_MS: '20000' };
  const server = await serve(env);
  const u = await UserClient.connect(server.url, 'patient');
  // Runs of one conversation wait for its current run: these three stay queued while the first runs (4 s, ample
  // time for SIGTERM to arrive even on a starved machine).
  const first = await u.start({ agent: 'chaos', input: { mode: 'slow', text: 's', ms: 4000 } });
  const queued = [];
  for (const text of ['q1', 'q2', 'q3']) queued.push(await u.start({ agent: 'echo', input: text, thread_id: first.thread_id }));
  await u.waitForEvent(first.run_id, 'agent_started');
  const exited = server.stop('SIGTERM');
  // The running run finishes within the grace period; the queued ones neither start nor end.
  expect(terminal(await u.waitForRun(first.run_id)).payload).toMatchObject({ status: 'completed', final_response: 'slept 4000 ms' });
  expect(await exited).toBe(0);
  for (const q of queued) expect(u.runEvents(q.run_id).map((e) => e.type)).toEqual(['message_received']);
  u.close();

  const again = await serve(env, { dir: server.dir });
  const c = await UserClient.connect(again.url, 'patient');
  for (const q of queued) {
    const run = await finishedRun(c, q.run_id);
    expect(run).toMatchObject({ status: 'completed' });
    await expectRanOnce(c, q.run_id);
  }
  // One conversation runs one run at a time: its answers are written in the order its runs ran.
  const history = (await c.http('GET', `/v1/threads/${first.thread_id}/messages`)).body.messages;
  const said = (role: string) => history.filter((m: any) => m.role === role).map((m: any) => m.content);
  expect(said('user')).toEqual(['s', 'q1', 'q2', 'q3']);
  expect(said('assistant')).toEqual(['slept 4000 ms', 'q1', 'q2', 'q3']);
  c.close();
  await again.stop();
}, 60_000);

test('a run is on disk before its acknowledgement: SIGKILL the instant the ack arrives, and the next start runs it', async () => {
  const env = { ENABLE_CHAOS_AGENTS: '1', CELLS: '1', THREADS_PER_CELL: '1' };
  const server = await serve(env);
  const u = await UserClient.connect(server.url, 'acked');
  // Keep the conversation busy so the acknowledged run is still queued when the process dies.
  const blocker = await u.start({ agent: 'chaos', input: { mode: 'slow', text: 's', ms: 60_000 } });
  await u.waitForEvent(blocker.run_id, 'agent_started');
  const acked = await new Promise<any>((resolve, reject) => {
    u.socket.timeout(10_000).emit('start_agent', { agent: 'echo', input: 'kept', thread_id: blocker.thread_id }, (err: unknown, ack: any) => {
      // Killed in the acknowledgement callback itself: not one more turn of the server's event loop.
      server.proc.kill('SIGKILL');
      if (err) reject(err);
      else resolve(ack);
    });
  });
  expect(acked).toMatchObject({ run_id: expect.any(String), thread_id: blocker.thread_id });
  await server.stop();
  u.close();

  const again = await serve(env, { dir: server.dir });
  const c = await UserClient.connect(again.url, 'acked');
  // The run exists (a write that came after the acknowledgement died with the process: 404)...
  expect((await c.http('GET', `/v1/runs/${acked.run_id}`)).status).toBe(200);
  // ...and it runs, once.
  expect(await finishedRun(c, acked.run_id)).toMatchObject({ status: 'completed', result: 'kept' });
  await expectRanOnce(c, acked.run_id);
  expect((await finishedRun(c, blocker.run_id)).error).toMatchObject({ code: 'WORKER_CRASHED' });
  c.close();
  await again.stop();
}, 60_000);

test('after a crash of the whole node, running runs are failed with a terminal event and queued runs still run', async () => {
  const server = await startServer({ ENABLE_CHAOS_AGENTS: '1', CELLS: '1', THREADS_PER_CELL: '1' });
  const u = await UserClient.connect(server.url, 'crashy');
  const running = await u.start({ agent: 'chaos', input: { mode: 'slow', text: 's', ms: 30_000 } });
  await u.waitForEvent(running.run_id, 'agent_thinking');
  const queued = await u.start({ agent: 'echo', input: 'survivor' });
  await u.waitForEvent(queued.run_id, 'message_received');
  const seenTypes = u.runEvents(running.run_id).map((e) => e.type);
  await server.stop('SIGKILL');
  u.close();

  const again = await startServer({ ENABLE_CHAOS_AGENTS: '1', CELLS: '1', THREADS_PER_CELL: '1' }, { dir: server.dir });
  const c = await UserClient.connect(again.url, 'crashy');
  // One comparison of everything, so a failure prints the whole of both runs (status, seqs, types, codes).
  const dead = (await c.http('GET', `/v1/runs/${running.run_id}/events`)).body;
  const deadSeen = { seen: seenTypes, status: dead.status, events: dead.events?.map((e: any) => `${e.seq} ${e.type}${e.payload?.error ? ` ${e.payload.error.code}` : ''}`) };
  expect(deadSeen).toEqual({
    seen: seenTypes,
    status: 'failed',
    events: [...seenTypes.map((t, i) => `${i + 1} ${t}`), `${seenTypes.length + 1} agent_completed WORKER_CRASHED`],
  });
  let survivor: any;
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
    survivor = (await c.http('GET', `/v1/runs/${queued.run_id}`)).body;
    if (survivor.status === 'completed') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const log = (await c.http('GET', `/v1/runs/${queued.run_id}/events`)).body;
  expect({ status: survivor.status, result: survivor.result, seqs: log.events.map((e: any) => `${e.seq} ${e.type}`) }).toEqual({
    status: 'completed',
    result: 'survivor',
    seqs: log.events.map((e: any, i: number) => `${i + 1} ${e.type}`),
  });
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

test('without AUTH_JWT_SECRET a development secret is kept beside the database (on PostgreSQL, in ./data)', async () => {
  const server = await startServer({ AUTH_JWT_SECRET: '' });
  const token = (await httpCall(server.url, 'POST', '/v1/auth/dev-login', { user_id: 'dev' })).body.token;
  expect(fs.existsSync(path.join(testStateDir(server.dir), '.dev-jwt-secret'))).toBe(true);
  await server.stop();
  const again = await startServer({ AUTH_JWT_SECRET: '' }, { dir: server.dir });
  expect((await httpCall(again.url, 'GET', '/v1/threads', undefined, token)).status).toBe(200);
  await again.stop();
});

void FIXTURE_AGENTS;
