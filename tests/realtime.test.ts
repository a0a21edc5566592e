/**
 * The realtime path under real conditions: dropped transports and replay, token expiry and refresh,
 * tickets, fairness between users, double-texting, overload, idempotency, backpressure, rate limits,
 * hostile input and a fuzz of every client event.
 */
import jwt from 'jsonwebtoken';
import type { Socket } from 'socket.io-client';
import { FIXTURE_AGENTS, startServer, type TestServer } from './helpers/server';
import { UserClient, devLogin, httpCall, terminal, type Envelope } from './helpers/client';
import { rawSocket, connected } from './helpers/raw-socket';
import { queryTestDatabase } from './helpers/test-database';
import { ERROR_CODES } from '../protocol/errors';

const SECRET = 'test-secret-test-secret-test-secret';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));



/** Collects run envelopes on a raw socket. */
function collect(socket: Socket): Envelope[] {
  const got: Envelope[] = [];
  socket.onAny((_n: string, e: Envelope) => e && typeof e === 'object' && 'seq' in e && got.push(e));
  return got;
}

async function until(check: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(20);
  }
}

describe('replay and reconnection', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ AGENTS_DIR: FIXTURE_AGENTS, ENABLE_CHAOS_AGENTS: '1' });
  });
  afterAll(() => server.stop());

  test('a dropped transport mid-run, then subscribe_run with the last seq: exactly the missed events, no gap, no duplicate', async () => {
    const token = await devLogin(server.url, 'dropper');
    const first = rawSocket(server.url, { token });
    await connected(first);
    const before = collect(first);
    const ack = await first.timeout(5000).emitWithAck('start_agent', { agent: 'streamer', input: { text: 'd', parts: 40, delay: 25 } });
    await until(() => before.filter((e) => e.type === 'partial_result').length >= 5);
    first.io.engine.close(); // the network drops
    const lastSeen = before.at(-1)!.seq;
    await sleep(300); // the run keeps going while nobody listens

    const second = rawSocket(server.url, { token });
    await connected(second);
    const after = collect(second);
    const sub = await second.timeout(10_000).emitWithAck('subscribe_run', { run_id: ack.run_id, after_seq: lastSeen });
    expect(sub).toMatchObject({ run_id: ack.run_id });
    await until(() => after.some((e) => e.type === 'agent_completed' && e.run_id === ack.run_id));
    const seqs = [...before, ...after].filter((e) => e.run_id === ack.run_id).map((e) => e.seq);
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
    const log = await httpCall(server.url, 'GET', `/v1/runs/${ack.run_id}/events`, undefined, token);
    expect([...before, ...after].filter((e) => e.run_id === ack.run_id)).toEqual(log.body.events);
    first.close();
    second.close();
  });

  test('subscribe_run on a finished run replays its whole log; on another user\'s run it is NOT_FOUND and sends nothing', async () => {
    const owner = await UserClient.connect(server.url, 'replay-owner');
    const thief = await UserClient.connect(server.url, 'replay-thief');
    const { run_id } = await owner.start({ agent: 'echo', input: 'mine' });
    const live = await owner.waitForRun(run_id);
    const late = await UserClient.connect(server.url, 'replay-owner');
    const ack = await late.ack('subscribe_run', { run_id, after_seq: 0 });
    expect(ack).toEqual({ run_id, last_seq: live.length, next_after_seq: null });
    expect(late.runEvents(run_id)).toEqual(live);
    expect(await thief.ack('subscribe_run', { run_id, after_seq: 0 })).toEqual({ error: { code: 'NOT_FOUND', message: 'no such run' } });
    await sleep(100);
    expect(thief.runEvents(run_id)).toEqual([]);
    const history = await owner.ack('get_thread_history', { thread_id: live[0].thread_id });
    expect(history.messages.map((m: any) => [m.role, m.content])).toEqual([['user', 'mine'], ['assistant', 'mine']]);
    expect(await thief.ack('get_thread_history', { thread_id: live[0].thread_id })).toMatchObject({ error: { code: 'NOT_FOUND' } });
    [owner, thief, late].forEach((c) => c.close());
  });

  test('after a restart of the server, a client that re-subscribes gets exactly what it missed', async () => {
    const s = await startServer({ AGENTS_DIR: FIXTURE_AGENTS });
    const u = await UserClient.connect(s.url, 'restarter');
    const { run_id } = await u.start({ agent: 'streamer', input: { text: 'r', parts: 3, delay: 10 } });
    const events = await u.waitForRun(run_id);
    u.close();
    await s.stop();
    const again = await startServer({ AGENTS_DIR: FIXTURE_AGENTS }, { dir: s.dir });
    const v = await UserClient.connect(again.url, 'restarter');
    await v.ack('subscribe_run', { run_id, after_seq: 2 });
    expect(v.runEvents(run_id)).toEqual(events.slice(2));
    v.close();
    await again.stop();
  });
});

describe('identity', () => {
  let server: TestServer;
  // Tokens below live 10 s and are warned about 8 s before expiry: the refresh has an 8 s window, wide enough
  // for a starved machine's round trip; nothing depends on how fast an idle one is.
  const LIFETIME_S = 10;
  beforeAll(async () => {
    server = await startServer({ AGENTS_DIR: FIXTURE_AGENTS, TOKEN_EXPIRY_WARNING_MS: '8000' });
  });
  afterAll(() => server.stop());

  test('a socket is told before its token expires, refreshes without losing events, and one that does not is disconnected', async () => {
    const short = (user: string) => jwt.sign({}, SECRET, { subject: user, expiresIn: LIFETIME_S });
    const refresher = rawSocket(server.url, { token: short('expiry-a') });
    const lapser = rawSocket(server.url, { token: short('expiry-a') });
    // Listen before connecting: the warning may come right after the handshake.
    const warned = new Promise<any>((resolve) => refresher.once('token_expiring', (w) => resolve({ ...w, at: Date.now() })));
    const told = new Promise<any>((resolve) => lapser.once('unauthorized', resolve));
    const kickedOut = new Promise<{ reason: unknown; at: number }>((resolve) => lapser.once('disconnect', (reason) => resolve({ reason, at: Date.now() })));
    const got = collect(refresher);
    const arrivals: number[] = [];
    refresher.onAny(() => arrivals.push(Date.now()));
    await Promise.all([connected(refresher), connected(lapser)]);
    // Streams for 15 s of sleeps (longer on a slow machine): it outlasts the first token whatever the load.
    const { run_id } = await refresher.timeout(10_000).emitWithAck('start_agent', { agent: 'streamer', input: { text: 'e', parts: 75, delay: 200 } });
    const warning = await warned;
    expect(warning).toMatchObject({ expires_at: expect.any(String) });
    expect(Date.parse(warning.expires_at)).toBeGreaterThan(warning.at);
    expect(await refresher.timeout(10_000).emitWithAck('refresh_token', { token: jwt.sign({}, SECRET, { subject: 'expiry-a', expiresIn: 600 }) })).toMatchObject({ expires_at: expect.any(String) });
    expect(await refresher.timeout(10_000).emitWithAck('refresh_token', { token: jwt.sign({}, SECRET, { subject: 'someone-else', expiresIn: 600 }) })).toMatchObject({ error: { code: 'UNAUTHORIZED' } });
    expect(await told).toMatchObject({ error: { code: 'UNAUTHORIZED' } });
    const kick = await kickedOut;
    expect(kick.reason).toBe('io server disconnect');
    await until(() => got.some((e) => e.type === 'agent_completed'), 60_000);
    expect(refresher.connected).toBe(true);
    // The refreshed socket kept receiving past the moment the first token expired (when the lapser went).
    expect(arrivals.some((t) => t > kick.at)).toBe(true);
    const seqs = got.filter((e) => e.run_id === run_id).map((e) => e.seq);
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
    expect(got.at(-1)).toMatchObject({ type: 'agent_completed', payload: { status: 'completed' } });
    refresher.close();
  }, 90_000);

  test('single-use tickets: valid once, refused the second time', async () => {
    const token = await devLogin(server.url, 'ticket-user');
    const res = await httpCall(server.url, 'POST', '/v1/auth/ticket', undefined, token);
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ ticket: expect.any(String), expires_in: 300 });
    const a = rawSocket(server.url, { ticket: res.body.ticket });
    expect(await connected(a)).toBeNull();
    const b = rawSocket(server.url, { ticket: res.body.ticket });
    const err = (await connected(b)) as any;
    expect(err.message).toBe('UNAUTHORIZED');
    a.close();
    b.close();
  });
});

describe('admission', () => {
  test('one user flooding never delays another; each user\'s runs start in order; waiting runs hear run_queued', async () => {
    const server = await startServer({ ENABLE_CHAOS_AGENTS: '1', CELLS: '1', THREADS_PER_CELL: '2', USER_MAX_CONCURRENT_RUNS: '3', LOG_LEVEL: 'debug' });
    const clients: UserClient[] = [];
    try {
      const heavy = await UserClient.connect(server.url, 'heavy');
      clients.push(heavy);
      const light = await Promise.all([1, 2].map((i) => UserClient.connect(server.url, `light-${i}`)));
      clients.push(...light);
      const flood = [];
      for (let i = 0; i < 12; i++) flood.push(await heavy.start({ agent: 'chaos', input: { mode: 'slow', text: `f${i}`, ms: 400 } }));
      const lights = [];
      for (let i = 0; i < 4; i++) lights.push({ c: light[i % 2], ...(await light[i % 2].start({ agent: 'chaos', input: { mode: 'slow', text: `l${i}`, ms: 50 } })) });
      for (const l of lights) await l.c.waitForRun(l.run_id, 20_000);
      const floodEvents = await Promise.all(flood.map((r) => heavy.waitForRun(r.run_id, 30_000)));
      // Order is read from the front's own sequence: its 'run dispatched' log lines, in the order it wrote them.
      const dispatchLines = server.logs.filter((l) => l.msg === 'run dispatched').map((l) => ({ id: l.run_id as string, at: Date.parse(l.time as string) }));
      const dispatched = dispatchLines.map((d) => d.id);
      const heavyIds = flood.map((r) => r.run_id);
      // Per-user FIFO: the heavy user's runs were each dispatched once, exactly in the order they were accepted.
      expect(dispatched.filter((id) => heavyIds.includes(id))).toEqual(heavyIds);
      for (const c of light) {
        const mine = lights.filter((l) => l.c === c).map((l) => l.run_id);
        expect(dispatched.filter((id) => mine.includes(id))).toEqual(mine);
      }
      // The light users' runs were all dispatched before the heavy user's backlog drained.
      const lastHeavy = dispatched.indexOf(heavyIds.at(-1)!);
      for (const l of lights) expect(dispatched.indexOf(l.run_id)).toBeLessThan(lastHeavy);
      // Round-robin: once a light run is accepted, the heavy user gets at most one turn per user ahead of it before
      // that run is dispatched (counted from the front's log, whatever the machine's speed; a per-user FIFO without
      // turns would dispatch the heavy backlog first: up to 10 here). Ties within a millisecond may count one more.
      const heavyTurnsWhileWaiting = lights.map((l) => {
        const acceptedAt = Date.parse(l.c.runEvents(l.run_id)[0].timestamp);
        const own = dispatchLines.findIndex((d) => d.id === l.run_id);
        return dispatchLines.slice(0, own).filter((d) => heavyIds.includes(d.id) && d.at >= acceptedAt).length;
      });
      expect(Math.max(...heavyTurnsWhileWaiting)).toBeLessThanOrEqual(3);
      // Runs that waited over a second were told their place.
      const queuedNotices = floodEvents.flatMap((ev) => ev.filter((e) => e.type === 'run_queued'));
      expect(queuedNotices.length).toBeGreaterThan(0);
      for (const n of queuedNotices) expect(n.payload.position).toBeGreaterThanOrEqual(1);
    } finally {
      clients.forEach((c) => c.close());
      await server.stop();
    }
  }, 60_000);

  test('double-texting: enqueue waits for the thread, reject refuses with THREAD_BUSY, interrupt stops the active run first', async () => {
    const server = await startServer({ ENABLE_CHAOS_AGENTS: '1' });
    const u = await UserClient.connect(server.url, 'texter');
    const first = await u.start({ agent: 'chaos', input: { mode: 'slow', text: 'a', ms: 600 } });
    const second = await u.start({ agent: 'echo', input: 'b', thread_id: first.thread_id });
    const e1 = await u.waitForRun(first.run_id);
    const e2 = await u.waitForRun(second.run_id);
    expect(Date.parse(e2.find((e) => e.type === 'agent_started')!.timestamp)).toBeGreaterThanOrEqual(Date.parse(terminal(e1).timestamp));

    const busy = await u.start({ agent: 'chaos', input: { mode: 'slow', text: 'c', ms: 2000 } });
    await u.waitForEvent(busy.run_id, 'agent_started');
    expect(await u.ack('start_agent', { agent: 'echo', input: 'd', thread_id: busy.thread_id, multitask: 'reject' })).toMatchObject({ error: { code: 'THREAD_BUSY' } });
    // Over HTTP the same refusal is 409 THREAD_BUSY (README, "Error codes"): a client retries a 409, not a 400 or a 500.
    const busyHttp = await u.http('POST', `/v1/threads/${busy.thread_id}/runs`, { agent: 'echo', input: 'd', multitask: 'reject' });
    expect([busyHttp.status, busyHttp.body.error?.code]).toEqual([409, 'THREAD_BUSY']);
    const interrupt = await u.start({ agent: 'echo', input: 'e', thread_id: busy.thread_id, multitask: 'interrupt' });
    expect(terminal(await u.waitForRun(busy.run_id)).payload.status).toBe('cancelled');
    expect(terminal(await u.waitForRun(interrupt.run_id)).payload).toMatchObject({ status: 'completed', final_response: 'e' });
    expect((await u.ack('start_agent', { agent: 'echo', input: 'x', multitask: 'sometimes' })).error).toMatchObject({ code: 'BAD_REQUEST', message: expect.stringMatching(/multitask/) });
    u.close();
    await server.stop();
  });

  test('overload: beyond MAX_QUEUED_RUNS a request is refused at once with a retry hint, and nothing accepted is lost', async () => {
    const server = await startServer({ ENABLE_CHAOS_AGENTS: '1', CELLS: '1', THREADS_PER_CELL: '1', MAX_QUEUED_RUNS: '2' });
    const u = await UserClient.connect(server.url, 'overloader');
    const accepted = [];
    let refusedSocket: any = null;
    for (let i = 0; i < 6 && !refusedSocket; i++) {
      const ack = await u.ack('start_agent', { agent: 'chaos', input: { mode: 'slow', text: `o${i}`, ms: 2500 } });
      if (ack.error) refusedSocket = ack;
      else accepted.push(ack);
    }
    expect(refusedSocket.error).toMatchObject({ code: 'OVERLOADED', retry_after_ms: expect.any(Number) });
    const thread = (await u.http('POST', '/v1/threads', {})).body;
    const refusedHttp = await u.http('POST', `/v1/threads/${thread.id}/runs`, { agent: 'echo', input: 'x' });
    expect(refusedHttp.status).toBe(503);
    expect(refusedHttp.headers.get('retry-after')).toMatch(/^\d+$/);
    expect((await httpCall(server.url, 'GET', '/healthz')).status).toBe(200);
    for (const a of accepted) expect(terminal(await u.waitForRun(a.run_id)).payload.status).toBe('completed');
    expect((await u.http('GET', `/v1/threads/${thread.id}/messages`)).body.messages).toEqual([]);
    u.close();
    await server.stop();
  });

  test('idempotency: a repeated correlation_id or Idempotency-Key returns the first run', async () => {
    const server = await startServer({});
    const u = await UserClient.connect(server.url, 'idem');
    const [a, b] = await Promise.all([0, 1].map(() => u.ack('start_agent', { agent: 'echo', input: 'once', correlation_id: 'req-1' })));
    expect(a.run_id).toBe(b.run_id);
    expect([a.deduplicated, b.deduplicated].filter(Boolean)).toHaveLength(1);
    await u.waitForRun(a.run_id);
    const again = await u.ack('start_agent', { agent: 'echo', input: 'once', correlation_id: 'req-1' });
    expect(again).toEqual({ run_id: a.run_id, thread_id: a.thread_id, deduplicated: true });
    const other = await UserClient.connect(server.url, 'idem-2');
    expect((await other.ack('start_agent', { agent: 'echo', input: 'x', correlation_id: 'req-1' })).run_id).not.toBe(a.run_id);
    const thread = (await u.http('POST', '/v1/threads', {})).body;
    const headers = { authorization: `Bearer ${u.token}`, 'content-type': 'application/json', 'idempotency-key': 'http-1' };
    const h1 = await (await fetch(`${server.url}/v1/threads/${thread.id}/runs`, { method: 'POST', headers, body: JSON.stringify({ agent: 'echo', input: 'h' }) })).json();
    const h2res = await fetch(`${server.url}/v1/threads/${thread.id}/runs`, { method: 'POST', headers, body: JSON.stringify({ agent: 'echo', input: 'h' }) });
    expect((await h2res.json()).id).toBe(h1.id);
    expect(h2res.headers.get('idempotent-replayed')).toBe('true');
    [u, other].forEach((c) => c.close());
    await server.stop();
  });

  // README: a correlation_id repeated "within 24 h returns the first run"; "an id reused after the 24-hour window
  // moves to the new run" (server/runs/intake.ts IDEMPOTENCY_WINDOW_MS). The first run is made older in the database.
  test('idempotency window: a correlation_id names its run for 24 h; past that it starts a new run and moves to it', async () => {
    const HOUR = 3600 * 1000;
    const server = await startServer({});
    const u = await UserClient.connect(server.url, 'idem-window');
    try {
      const queuedAgo = (runId: string, ms: number) =>
        queryTestDatabase(server.dir, 'UPDATE "Run" SET "queuedAt" = ? WHERE "id" = ?', [new Date(Date.now() - ms).toISOString().replace('Z', '+00:00'), runId]);
      const again = () => u.ack('start_agent', { agent: 'echo', input: 'day', correlation_id: 'day-1' });
      const first = await u.start({ agent: 'echo', input: 'day', correlation_id: 'day-1' });
      await u.waitForRun(first.run_id);
      await queuedAgo(first.run_id, 23 * HOUR);
      expect(await again()).toEqual({ run_id: first.run_id, thread_id: first.thread_id, deduplicated: true });
      await queuedAgo(first.run_id, 24 * HOUR + 60_000);
      const second = await again();
      expect(second.run_id).toEqual(expect.any(String));
      expect(second.run_id).not.toBe(first.run_id);
      expect(second.deduplicated).toBeFalsy();
      expect(terminal(await u.waitForRun(second.run_id)).payload.status).toBe('completed');
      // The id is the new run's now: repeated, it returns that one; the old run keeps no claim on it.
      expect(await again()).toEqual({ run_id: second.run_id, thread_id: second.thread_id, deduplicated: true });
      expect(await queryTestDatabase(server.dir, 'SELECT "id" FROM "Run" WHERE "correlationId" = ?', ['day-1'])).toEqual([{ id: second.run_id }]);
    } finally {
      u.close();
      await server.stop();
    }
  });
});

describe('limits and hostile input', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({
      AGENTS_DIR: FIXTURE_AGENTS,
      RATE_LIMIT_USER_PER_SEC: '5',
      RATE_LIMIT_USER_BURST: '5',
      MAX_CONNECTIONS_PER_USER: '2',
      MAX_INPUT_BYTES: '4096',
      SOCKET_MAX_BUFFERED_PACKETS: '20',
      MAX_EVENT_BYTES: '70000',
      // The stalled socket's run streams 400 × 61 kB, over the default MAX_RUN_EVENT_BYTES.
      MAX_RUN_EVENT_BYTES: String(64 * 1024 * 1024),
    });
  });
  afterAll(() => server.stop());

  test('rate limits: over the budget a clear RATE_LIMITED with a retry time, never a silent drop; it recovers', async () => {
    const u = await UserClient.connect(server.url, 'limited');
    const acks = await Promise.all(Array.from({ length: 10 }, () => u.ack('get_thread_history', { thread_id: 'nope' })));
    const limited = acks.filter((a) => a.error?.code === 'RATE_LIMITED');
    expect(limited.length).toBeGreaterThanOrEqual(4);
    expect(acks.filter((a) => a.error?.code === 'NOT_FOUND').length + limited.length).toBe(10);
    expect(limited[0].error.retry_after_ms).toBeGreaterThan(0);
    // The same budget covers HTTP. Asked at once (a starved machine may take a second over the acks above,
    // refilling a few tokens), some of these must be refused.
    const https = await Promise.all(Array.from({ length: 10 }, () => u.http('GET', '/v1/threads')));
    const http = https.find((h) => h.status === 429)!;
    expect(http?.status).toBe(429);
    expect(http.headers.get('retry-after')).toMatch(/^\d+$/);
    await sleep(1300);
    expect((await u.ack('get_thread_history', { thread_id: 'nope' })).error.code).toBe('NOT_FOUND');
    // Connections per user are capped too.
    const second = await UserClient.connect(server.url, 'limited');
    const third = rawSocket(server.url, { token: u.token });
    const err = (await connected(third)) as any;
    expect(err.message).toBe('RATE_LIMITED');
    [u, second].forEach((c) => c.close());
    third.close();
  });

  test('hostile payloads each get BAD_REQUEST saying what is wrong; the server\'s objects are not polluted; the connection stays healthy', async () => {
    const u = await UserClient.connect(server.url, 'hostile');
    const deep: any = { agent: 'echo', input: { text: 'x' } };
    let cursor = deep.input;
    for (let i = 0; i < 50; i++) cursor = cursor.next = {};
    // What a polluted Object.prototype in the server would show: fields the server reads as "absent unless
    // given" (a run's correlation_id, a thread's title) would read the planted value in everybody's requests.
    const plant = { polluted: true, correlation_id: 'planted-by-hostile', title: 'planted-by-hostile' };
    const cases: [unknown, RegExp][] = [
      ['not an object', /expected object/],
      [{ agent: 42, input: 'x' }, /agent/],
      [{ input: 'x' }, /agent/],
      [{ agent: 'echo', input: 'x'.repeat(10_000) }, /MAX_INPUT_BYTES/],
      [deep, /nested deeper than 20/],
      [JSON.parse(`{"agent":"echo","input":{"text":"x","__proto__":${JSON.stringify(plant)}}}`), /"__proto__" is not allowed/],
      [JSON.parse(`{"agent":"echo","__proto__":${JSON.stringify(plant)},"input":"x"}`), /"__proto__" is not allowed/],
      [{ agent: 'echo', input: { text: 'x', constructor: { prototype: plant } } }, /"constructor" is not allowed/],
      [{ agent: 'echo', input: 'bell\u0007' }, /control characters/],
      [{ agent: 'no-such-agent', input: 'x' }, /unknown agent/],
    ];
    const acks: any[] = [];
    for (const [payload] of cases) {
      await sleep(220); // stay under this server's low rate limit
      acks.push(await u.ack('start_agent', payload));
    }
    await sleep(220);
    const http = await u.http('POST', '/v1/threads', `{"title":"t","__proto__":${JSON.stringify(plant)}}`);

    // Look for the pollution in the server first (another user's requests), before judging the answers: a
    // sanitiser that let a payload through would fail the codes below, but what matters is the server's state.
    const bystander = await UserClient.connect(server.url, 'bystander');
    const plain = await bystander.start({ agent: 'echo', input: 'plain' });
    const events = await bystander.waitForRun(plain.run_id);
    expect(events[0]).toMatchObject({ type: 'message_received', payload: { correlation_id: null } });
    expect(terminal(events).payload.final_response).toBe('plain');
    const run = (await bystander.http('GET', `/v1/runs/${plain.run_id}`)).body;
    expect(JSON.stringify(run)).not.toContain('planted-by-hostile');
    const thread = await bystander.http('POST', '/v1/threads', {});
    expect(thread.status).toBe(201);
    expect(thread.body.title).toBeNull();
    bystander.close();

    for (const [i, [payload, message]] of cases.entries()) {
      const ack = acks[i];
      expect([payload, ack.error?.code]).toEqual([payload, ack.error?.code === 'PAYLOAD_TOO_LARGE' ? 'PAYLOAD_TOO_LARGE' : 'BAD_REQUEST']);
      expect(ack.error.message).toMatch(message);
    }
    expect(http.status).toBe(400);
    await sleep(220);
    expect((await u.ack('no_such_event', {})).error).toMatchObject({ code: 'BAD_REQUEST', message: expect.stringMatching(/unknown event/) });
    expect(u.socket.connected).toBe(true);
    await sleep(220);
    const ok = await u.start({ agent: 'echo', input: 'still fine' });
    expect(terminal(await u.waitForRun(ok.run_id)).payload.final_response).toBe('still fine');
    expect((await httpCall(server.url, 'GET', '/healthz')).status).toBe(200);
    u.close();
  });

  test('a stalled socket stops getting live events and is told resync_required; replay fills the gap', async () => {
    const token = await devLogin(server.url, 'stalled');
    const s = rawSocket(server.url, { token });
    await connected(s);
    const got = collect(s);
    const resync = new Promise<any>((resolve) => s.once('resync_required', resolve));
    // Paced so the stall outlasts many coalescing rounds (one merged packet per 50 ms while it lags).
    const { run_id } = await s.timeout(5000).emitWithAck('start_agent', { agent: 'streamer', input: { text: 'x'.repeat(1000), parts: 400, delay: 8, pad: 60000 } });
    // Stop reading from the TCP connection: the server's write buffer for this socket grows.
    const raw = (s.io.engine as any).transport.ws._socket;
    raw.pause();
    // Held until the run has ended on the server (a state, not a time: a starved machine streams slowly), so
    // everything it streamed (400 × 60 kB) piled up behind this socket, far over its budget.
    // Polled under this server's rate limit (5/s): a 429 is just asked again.
    for (const deadline = Date.now() + 45_000; ; await sleep(400)) {
      const run = await httpCall(server.url, 'GET', `/v1/runs/${run_id}`, undefined, token);
      if (['completed', 'failed', 'cancelled', 'timeout'].includes(run.body?.status)) break;
      if (Date.now() > deadline) throw new Error(`run still ${run.body.status} after 45 s`);
    }
    raw.resume();
    const notice = await Promise.race([resync, sleep(20_000).then(() => Promise.reject(new Error('no resync_required within 20 s')))]);
    expect(notice).toMatchObject({ run_id, last_seq: expect.any(Number) });
    await sleep(300);
    // A long log is replayed in size-capped parts: follow next_after_seq to the end.
    for (let after: number | null = notice.last_seq; after !== null; ) {
      const ack: any = await s.timeout(10_000).emitWithAck('subscribe_run', { run_id, after_seq: after });
      // While the socket is still over its byte budget a replay is refused with a retry hint: wait, ask again.
      if (ack.error?.code === 'RATE_LIMITED') {
        await sleep(200);
        continue;
      }
      expect(ack.error).toBeUndefined();
      after = ack.next_after_seq;
    }
    await until(() => got.some((e) => e.type === 'agent_completed' && e.run_id === run_id), 45_000);
    // A lagging socket may get partial results merged: an envelope then covers coalesced_from_seq..seq.
    const seqs = got.filter((e) => e.run_id === run_id).flatMap((e: any) => (e.coalesced_from_seq ? Array.from({ length: e.seq - e.coalesced_from_seq + 1 }, (_, i) => e.coalesced_from_seq + i) : [e.seq]));
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
    s.close();
  }, 120_000);

  test('fuzz: random payloads to every event never break the server or the connection', async () => {
    const fuzzServer = await startServer({ AGENTS_DIR: FIXTURE_AGENTS });
    const u = await UserClient.connect(fuzzServer.url, 'fuzzer');
    let seed = 42;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
    const value = (depth: number): unknown => {
      const kind = Math.floor(rand() * (depth > 3 ? 5 : 8));
      switch (kind) {
        case 0: return null;
        case 1: return rand() * 1e9 - 5e8;
        case 2: return pick(['', 'echo', 'streamer', 'x'.repeat(Math.floor(rand() * 3000)), '\u0000', '💥', '../../etc/passwd', 'run-1']);
        case 3: return rand() > 0.5;
        case 4: return pick([undefined, -1, 0, 1e308, Number.MAX_SAFE_INTEGER]);
        case 5: return Array.from({ length: Math.floor(rand() * 4) }, () => value(depth + 1));
        default: {
          const o: Record<string, unknown> = {};
          for (let i = 0; i < Math.floor(rand() * 5); i++) o[pick(['agent', 'input', 'text', 'run_id', 'thread_id', 'after_seq', 'token', 'limit', 'multitask', 'correlation_id', 'x'])] = value(depth + 1);
          return o;
        }
      }
    };
    const events = ['start_agent', 'stop_agent', 'subscribe_run', 'get_thread_history', 'refresh_token', 'nope', '__proto__'];
    const codes = new Set(Object.keys(ERROR_CODES));
    for (let i = 0; i < 300; i++) {
      const ack = await u.ack(pick(events), value(0));
      expect(ack && typeof ack === 'object').toBe(true);
      if (ack.error) expect(codes.has(ack.error.code)).toBe(true);
    }
    expect(u.socket.connected).toBe(true);
    expect((await httpCall(fuzzServer.url, 'GET', '/healthz')).status).toBe(200);
    const ok = await u.start({ agent: 'echo', input: 'after fuzz' });
    expect(terminal(await u.waitForRun(ok.run_id)).payload.final_response).toBe('after fuzz');
    u.close();
    await fuzzServer.stop();
  }, 60_000);
});
