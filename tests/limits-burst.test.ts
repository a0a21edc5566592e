/**
 * Limits that hold under a burst: run-queue places and connection slots are claimed atomically, so
 * requests that arrive together cannot all pass one check; failed handshakes are rate-limited per address.
 */
import { startServer, type TestServer } from './helpers/server';
import { devLogin, httpCall, metricValue } from './helpers/client';
import { rawSocket, connected } from './helpers/raw-socket';
import { pollingSession } from './helpers/polling-session';
import { MAX_CONNECTS_BEFORE_SOCKET } from '../server/realtime/engine-connections';


describe('bursts', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({
      ENABLE_CHAOS_AGENTS: '1',
      CELLS: '1',
      THREADS_PER_CELL: '1',
      MAX_QUEUED_RUNS: '20',
      USER_MAX_QUEUED_RUNS: '10',
      MAX_CONNECTIONS_PER_USER: '3',
      RATE_LIMIT_AUTH_FAILURES_BURST: '3',
      RATE_LIMIT_AUTH_FAILURES_PER_MIN: '1',
      SHUTDOWN_GRACE_MS: '0',
    });
  });
  afterAll(() => server.stop());

  test('start_agent sent 200 at once: USER_MAX_QUEUED_RUNS, then MAX_QUEUED_RUNS hold; the rest is OVERLOADED', async () => {
    // At most 1 worker plus burst workers (runs over LONG_RUN_MS) take runs out of the queue meanwhile.
    const dispatchable = 5;
    const burst = async (userId: string) => {
      const s = rawSocket(server.url, await devLogin(server.url, userId));
      expect(await connected(s)).toBeNull();
      // Emitted together, not awaited one by one: the server sees them as one burst.
      const acks = await Promise.all(Array.from({ length: 200 }, (_, i) => s.timeout(60_000).emitWithAck('start_agent', { agent: 'chaos', input: { mode: 'slow', ms: 20_000, text: `${i}` } })));
      s.close();
      const accepted = acks.filter((a) => a.run_id).length;
      expect(acks.filter((a) => !a.run_id).every((a) => a.error?.code === 'OVERLOADED')).toBe(true);
      return accepted;
    };
    const first = await burst('burst-a');
    expect(first).toBeGreaterThanOrEqual(10);
    expect(first).toBeLessThanOrEqual(10 + dispatchable);
    const second = await burst('burst-b');
    expect(first + second).toBeGreaterThanOrEqual(20);
    expect(first + second).toBeLessThanOrEqual(20 + dispatchable);
  }, 120_000);

  test(`${MAX_CONNECTS_BEFORE_SOCKET} CONNECT packets in one long-polling POST open one socket; the others are refused; the gauge counts sockets; more close the connection`, async () => {
    const token = await devLogin(server.url, 'connect-burst');
    const session = await pollingSession(server.url);
    await session.post(Array.from({ length: MAX_CONNECTS_BEFORE_SOCKET }, () => `40${JSON.stringify({ token })}`));
    const answers: string[] = [];
    const deadline = Date.now() + 30_000;
    while (answers.filter((p) => p.startsWith('40') || p.startsWith('44')).length < MAX_CONNECTS_BEFORE_SOCKET && Date.now() < deadline) answers.push(...(await session.read()));
    const opened = answers.filter((p) => p.startsWith('40'));
    const refused = answers.filter((p) => p.startsWith('44'));
    expect(opened).toHaveLength(1);
    expect(refused).toHaveLength(MAX_CONNECTS_BEFORE_SOCKET - 1);
    expect(JSON.parse(refused[0].slice(2))).toMatchObject({ message: 'BAD_REQUEST', data: { code: 'BAD_REQUEST', message: expect.stringMatching(/one socket per connection/) } });
    const metrics = (await httpCall(server.url, 'GET', '/metrics')).body as string;
    expect(metricValue(metrics, 'atoll_socket_connections')).toBe(1);
    // Each CONNECT costs a token check and a slot claim: a connection may not send them on and on
    // (server/realtime/engine-connections.ts).
    const flood = await pollingSession(server.url);
    await flood.post(Array.from({ length: 150 }, () => `40${JSON.stringify({ token })}`));
    expect(await flood.alive()).toBe(false);
  }, 60_000);

  test('failed handshakes cost their address: after the burst a clear RATE_LIMITED, even with a good token', async () => {
    const token = await devLogin(server.url, 'handshaker');
    // Successful handshakes cost nothing of this budget.
    for (let i = 0; i < 4; i++) {
      const ok = rawSocket(server.url, token);
      expect(await connected(ok)).toBeNull();
      ok.close();
    }
    for (let i = 0; i < 3; i++) {
      const bad = rawSocket(server.url, 'not-a-token');
      expect(((await connected(bad)) as any)?.data).toMatchObject({ code: 'UNAUTHORIZED' });
      bad.close();
    }
    const blocked = rawSocket(server.url, token);
    const err = (await connected(blocked)) as any;
    blocked.close();
    expect(err?.data).toMatchObject({ code: 'RATE_LIMITED', message: expect.stringMatching(/failed handshakes from this address/) });
  });
});

describe('a burst of failed handshakes', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ CELLS: '1', THREADS_PER_CELL: '1', RATE_LIMIT_AUTH_FAILURES_BURST: '3', RATE_LIMIT_AUTH_FAILURES_PER_MIN: '1', SHUTDOWN_GRACE_MS: '0' });
  });
  afterAll(() => server.stop());

  test(`${MAX_CONNECTS_BEFORE_SOCKET} CONNECT packets with a bad token in one long-polling POST: 3 are UNAUTHORIZED, the others RATE_LIMITED`, async () => {
    // The handshakes are checked concurrently: each failure must be counted before the next check passes.
    const session = await pollingSession(server.url);
    await session.post(Array.from({ length: MAX_CONNECTS_BEFORE_SOCKET }, () => `40${JSON.stringify({ token: 'not-a-token' })}`));
    const answers: string[] = [];
    const deadline = Date.now() + 30_000;
    while (answers.filter((p) => p.startsWith('44')).length < MAX_CONNECTS_BEFORE_SOCKET && Date.now() < deadline) answers.push(...(await session.read()));
    const codes = answers.filter((p) => p.startsWith('44')).map((p) => (JSON.parse(p.slice(2)) as { data: { code: string } }).data.code);
    expect(codes.filter((c) => c === 'UNAUTHORIZED')).toHaveLength(3);
    expect(codes.filter((c) => c === 'RATE_LIMITED')).toHaveLength(MAX_CONNECTS_BEFORE_SOCKET - 3);
  }, 60_000);
});

/**
 * Connects one after another, each socket closed once it is in; returns the outcomes and how long it took. A
 * handshake costs the front ~1.5 ms (the transport, the token, the slot, the bus subscription): unbudgeted, one
 * user connecting and disconnecting in a loop took half of the front's core.
 */
async function connectInTurn(url: string, tokens: string[]): Promise<{ admitted: number; refusals: any[]; seconds: number }> {
  const started = Date.now();
  const refusals: any[] = [];
  let admitted = 0;
  for (const token of tokens) {
    const s = rawSocket(url, token);
    const err = (await connected(s)) as any;
    s.close();
    if (err) refusals.push(err.data);
    else admitted++;
  }
  return { admitted, refusals, seconds: (Date.now() - started) / 1000 };
}

describe('successful handshakes spend the request budgets', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ CELLS: '1', THREADS_PER_CELL: '1', RATE_LIMIT_USER_PER_SEC: '1', RATE_LIMIT_USER_BURST: '4', RATE_LIMIT_IP_PER_SEC: '1', RATE_LIMIT_IP_BURST: '20', SHUTDOWN_GRACE_MS: '0' });
  });
  afterAll(() => server.stop());

  test('one user connecting in a loop: past its burst each handshake is RATE_LIMITED with a retry time; another user still gets in', async () => {
    const [churner, other] = [await devLogin(server.url, 'churner'), await devLogin(server.url, 'steady')];
    const { admitted, refusals, seconds } = await connectInTurn(server.url, Array(10).fill(churner));
    // The burst, plus what refilled at 1 a second meanwhile.
    expect(admitted).toBeGreaterThanOrEqual(4);
    expect(admitted).toBeLessThanOrEqual(4 + Math.ceil(seconds));
    expect(refusals.length).toBe(10 - admitted);
    for (const r of refusals) expect(r).toMatchObject({ code: 'RATE_LIMITED', message: expect.stringMatching(/requests for this user/), retry_after_ms: expect.any(Number) });
    const ok = rawSocket(server.url, other);
    expect(await connected(ok)).toBeNull();
    ok.close();
  }, 60_000);

  test('many users from one address: past the address\'s burst each handshake is RATE_LIMITED', async () => {
    // The address's budget is shared with the HTTP requests (the sign-ins) and the handshakes above: spent to its last token here.
    const tokens = await Promise.all(['a', 'b', 'c', 'd', 'e', 'f'].map((u) => devLogin(server.url, `crowd-${u}`)));
    const { admitted, refusals, seconds } = await connectInTurn(server.url, [...tokens, ...tokens, ...tokens, ...tokens]);
    expect(admitted).toBeLessThanOrEqual(20 + Math.ceil(seconds));
    expect(refusals.length).toBeGreaterThan(0);
    expect(refusals.filter((r) => r.code === 'RATE_LIMITED' && /requests from this address/.test(r.message)).length).toBeGreaterThan(0);
  }, 60_000);
});
