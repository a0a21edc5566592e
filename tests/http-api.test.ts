/** The HTTP API: auth, coded errors, threads, runs, pagination, agents, health and metrics. */
import { FIXTURE_AGENTS, startServer, type TestServer } from './helpers/server';
import { UserClient, eventually, httpCall, metricValue } from './helpers/client';
import { queryTestDatabase } from './helpers/test-database';
import jwt from 'jsonwebtoken';

const SECRET = 'test-secret-test-secret-test-secret'; // startServer's AUTH_JWT_SECRET

let server: TestServer;
let u: UserClient;

beforeAll(async () => {
  server = await startServer({ AGENTS_DIR: FIXTURE_AGENTS, MAX_INPUT_BYTES: '1024' });
  u = await UserClient.connect(server.url, 'http-user');
});
afterAll(async () => {
  u.close();
  await server.stop();
});

test('no, bad, wrongly signed or expired token: 401 UNAUTHORIZED saying which', async () => {
  const wronglySigned = jwt.sign({}, 'another-secret-another-secret', { algorithm: 'HS256', subject: 'http-user', expiresIn: 600 });
  const expired = jwt.sign({ iat: Math.floor(Date.now() / 1000) - 600 }, SECRET, { algorithm: 'HS256', subject: 'http-user', expiresIn: 300 });
  const cases: [string | null, RegExp][] = [[null, /missing bearer token/], ['garbage', /invalid token/], [wronglySigned, /invalid token/], [expired, /token expired/]];
  for (const [token, message] of cases) {
    const res = await httpCall(server.url, 'GET', '/v1/threads', undefined, token);
    expect([token, res.status]).toEqual([token, 401]);
    expect(res.body.error).toMatchObject({ code: 'UNAUTHORIZED', message: expect.stringMatching(message) });
  }
  // The same user with a live token is let in: what was refused above was the token.
  const live = jwt.sign({}, SECRET, { algorithm: 'HS256', subject: 'http-user', expiresIn: 300 });
  expect((await httpCall(server.url, 'GET', '/v1/threads', undefined, live)).status).toBe(200);
});

test('bad bodies: 400 BAD_REQUEST saying what is wrong; oversized input 413', async () => {
  const thread = (await u.http('POST', '/v1/threads', { title: 't' })).body;
  const cases: [unknown, RegExp][] = [
    ['{not json', /malformed JSON/],
    [{ input: 'x' }, /agent/],
    [{ agent: 'echo' }, /input/],
    [{ agent: 'echo', input: 42 }, /input/],
    [{ agent: 'no such agent!', input: 'x' }, /agent: must be an agent name/],
    [{ agent: 'nosuchagent', input: 'x' }, /unknown agent "nosuchagent"/],
    [{ agent: 'echo', input: { nottext: 1 } }, /input/],
  ];
  for (const [body, message] of cases) {
    const res = await u.http('POST', `/v1/threads/${thread.id}/runs`, body);
    expect([body, res.status]).toEqual([body, 400]);
    expect(res.body.error.code).toBe('BAD_REQUEST');
    expect(res.body.error.message).toMatch(message);
  }
  const big = await u.http('POST', `/v1/threads/${thread.id}/runs`, { agent: 'echo', input: 'x'.repeat(2000) });
  expect(big.status).toBe(413);
  expect(big.body.error.code).toBe('PAYLOAD_TOO_LARGE');
  expect((await u.ack('start_agent', { agent: 'echo' })).error).toMatchObject({ code: 'BAD_REQUEST', message: expect.stringMatching(/input/) });
  expect((await u.ack('no_such_event', {})).error).toMatchObject({ code: 'BAD_REQUEST', message: expect.stringMatching(/unknown event/) });
});

// README, "socket.io: server → client": a bad client event sent without an ack callback is answered with
// `request_error {event, error}`. A client without acks learns of its refusal only so; nothing else checked that it
// comes (socket-flood.test.ts counts these refusals, but passes when none arrives).
test('a bad event sent without an ack callback is answered with request_error {event, error}', async () => {
  const heard: any[] = [];
  const listener = (p: unknown) => void heard.push(p);
  u.socket.on('request_error' as any, listener);
  try {
    u.socket.emit('no_such_event' as any, {});
    u.socket.emit('start_agent' as any, { agent: 'echo' });
    for (const deadline = Date.now() + 10_000; heard.length < 2 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 50));
    expect(heard).toEqual([
      { event: 'no_such_event', error: { code: 'BAD_REQUEST', message: expect.stringMatching(/unknown event/) } },
      { event: 'start_agent', error: { code: 'BAD_REQUEST', message: expect.stringMatching(/input/) } },
    ]);
  } finally {
    u.socket.off('request_error' as any, listener);
  }
});

test('threads, runs over HTTP (202), run view, agents', async () => {
  const created = await u.http('POST', '/v1/threads', { title: 'my thread' });
  expect(created.status).toBe(201);
  expect(created.body).toMatchObject({ id: expect.any(String), title: 'my thread' });
  const started = await u.http('POST', `/v1/threads/${created.body.id}/runs`, { agent: 'echo', input: 'over http' });
  expect(started.status).toBe(202);
  expect(started.body).toMatchObject({ thread_id: created.body.id, agent: 'echo', status: 'queued', input: { text: 'over http' } });
  await u.waitForRun(started.body.id);
  const run = await u.http('GET', `/v1/runs/${started.body.id}`);
  expect(run.body).toMatchObject({ status: 'completed', result: 'over http', error: null, attempts: 1, ran_on: { cell: expect.any(String), worker: expect.any(Number) } });
  const list = await u.http('GET', '/v1/threads');
  expect(list.body.threads.map((t: any) => t.id)).toContain(created.body.id);
  const agents = await u.http('GET', '/v1/agents');
  expect(agents.body.agents.map((a: any) => a.name)).toEqual(expect.arrayContaining(['echo', 'streamer', 'stateful']));
  expect(agents.body.agents.map((a: any) => a.name)).not.toContain('chaos'); // only with ENABLE_CHAOS_AGENTS=1
});

test('messages are paginated: default 50, at most 100, in order with a cursor', async () => {
  const first = await u.start({ agent: 'echo', input: 'm0' });
  await u.waitForRun(first.run_id);
  for (let i = 1; i < 30; i++) {
    const r = await u.start({ agent: 'echo', input: `m${i}`, thread_id: first.thread_id });
    await u.waitForRun(r.run_id);
  }
  const page1 = await u.http('GET', `/v1/threads/${first.thread_id}/messages`);
  expect(page1.body.messages).toHaveLength(50);
  expect(page1.body.next_after).toBe(page1.body.messages[49].id);
  const page2 = await u.http('GET', `/v1/threads/${first.thread_id}/messages?after=${page1.body.next_after}`);
  expect(page2.body.messages).toHaveLength(10);
  expect(page2.body.next_after).toBeNull();
  const all = [...page1.body.messages, ...page2.body.messages];
  expect(all.map((m: any) => m.content)).toEqual(Array.from({ length: 30 }, (_, i) => [`m${i}`, `m${i}`]).flat());
  expect(all.map((m: any) => m.role)).toEqual(Array.from({ length: 30 }, () => ['user', 'assistant']).flat());
  expect((await u.http('GET', `/v1/threads/${first.thread_id}/messages?limit=101`)).status).toBe(400);
  expect((await u.http('GET', `/v1/threads/${first.thread_id}/messages?limit=100`)).body.messages).toHaveLength(60);
});

test('healthz, metrics and unknown routes', async () => {
  const health = await httpCall(server.url, 'GET', '/healthz');
  expect(health.status).toBe(200);
  expect(health.body).toMatchObject({ status: 'ok', draining: false, cells_ready: 2 });
  const metrics = await httpCall(server.url, 'GET', '/metrics');
  expect(metrics.status).toBe(200);
  for (const name of ['atoll_runs_finished_total', 'atoll_run_duration_seconds_bucket', 'atoll_runs_active', 'atoll_runs_queued', 'atoll_cells_alive', 'atoll_threads_alive', 'process_resident_memory_bytes']) {
    expect(metrics.body).toContain(name);
  }
  expect(metricValue(metrics.body, 'atoll_runs_finished_total', { status: 'completed', code: 'none' })).toBeGreaterThan(0);
  const missing = await httpCall(server.url, 'GET', '/nope');
  expect(missing.status).toBe(404);
  expect(missing.body.error.code).toBe('NOT_FOUND');
});

// README, Error codes: INTERNAL (500) is "an unexpected fault (logged)". Nothing a client sends makes one (each
// mistake of a client's has its own code); a database that stops answering as the server expects does: here a
// table renamed behind the server's back, as an operator's mistake would. No hook in the server.
test('an unexpected fault (a table renamed behind the server): 500 INTERNAL over HTTP and on a socket ack, logged, its details kept out of the answer', async () => {
  const thread = (await u.http('POST', '/v1/threads', { title: 'kept' })).body;
  await queryTestDatabase(server.dir, 'ALTER TABLE "Thread" RENAME TO "ThreadAway"');
  try {
    const res = await u.http('GET', '/v1/threads');
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: { code: 'INTERNAL', message: 'internal error' } });
    expect(await u.ack('get_thread_history', { thread_id: thread.id })).toEqual({ error: { code: 'INTERNAL', message: 'internal error' } });
    // Logged with what went wrong (the log reaches the test through a pipe: waited for).
    const logged = (msg: string) => server.logs.find((l) => l.msg === msg);
    await eventually(() => logged('unhandled HTTP error') !== undefined && logged('socket handler failed') !== undefined);
    expect(logged('unhandled HTTP error')).toMatchObject({ path: '/v1/threads', err: expect.stringMatching(/Thread/) });
    expect(logged('socket handler failed')).toMatchObject({ event: 'get_thread_history', user_id: 'http-user', err: expect.stringMatching(/Thread/) });
  } finally {
    await queryTestDatabase(server.dir, 'ALTER TABLE "ThreadAway" RENAME TO "Thread"');
  }
  // A fault, not a state: the same requests answer again once the table is back.
  expect((await u.http('GET', '/v1/threads')).status).toBe(200);
  expect((await u.ack('get_thread_history', { thread_id: thread.id })).messages).toEqual([]);
});
