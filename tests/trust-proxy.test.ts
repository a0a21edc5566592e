/**
 * TRUST_PROXY: behind a load balancer every peer address is the balancer's. Off (the default), X-Forwarded-For is
 * ignored: a client cannot pick its own budget by naming another address, and every request from one peer shares
 * its per-address rate limit (RATE_LIMIT_IP_*) and connection cap (MAX_CONNECTIONS_PER_IP). On (here `loopback`:
 * the test's own address is the trusted proxy), each forwarded client gets a budget and a cap of its own, over HTTP
 * and at the socket handshake alike, and each is still enforced; an IPv6 client's is its /64's (IPV6_BUDGET_PREFIX).
 */
import jwt from 'jsonwebtoken';
import type { Socket } from 'socket.io-client';
import { startServer, type TestServer } from './helpers/server';
import { connected, rawSocket } from './helpers/raw-socket';

const SECRET = 'test-secret-test-secret-test-secret'; // startServer's AUTH_JWT_SECRET
const token = (user: string) => jwt.sign({}, SECRET, { algorithm: 'HS256', subject: user, expiresIn: 3600 });
const BURST = 5;
const PER_IP = 2;
const LIMITS = { CELLS: '1', THREADS_PER_CELL: '1', RATE_LIMIT_IP_PER_SEC: '1', RATE_LIMIT_IP_BURST: String(BURST), MAX_CONNECTIONS_PER_IP: String(PER_IP) };

/** n requests at once, each naming `forwardedFor[i]` (one per request, or the same) as the client; their statuses. */
async function statuses(server: TestServer, forwardedFor: string[]): Promise<number[]> {
  return Promise.all(
    forwardedFor.map(async (xff, i) => {
      const res = await fetch(`${server.url}/v1/agents`, { headers: { authorization: `Bearer ${token(`u${i}`)}`, 'x-forwarded-for': xff } });
      await res.arrayBuffer();
      return res.status;
    }),
  );
}
const count = (list: number[], status: number) => list.filter((s) => s === status).length;

/**
 * A handshake spends a token of its client's request budget, which the HTTP tests before spent to its last: at 1 a
 * second, the whole burst is back after BURST seconds (waiting longer gives no more), so what refuses a socket
 * below is the connection cap.
 */
const budgetsRefilled = () => new Promise((r) => setTimeout(r, (BURST + 1) * 1000));

/** Opens sockets one after another, each naming its client; which were admitted, and the refusals' messages. */
async function openSockets(server: TestServer, forwardedFor: string[], opened: Socket[]): Promise<(string | null)[]> {
  const results: (string | null)[] = [];
  for (const [i, xff] of forwardedFor.entries()) {
    const socket = rawSocket(server.url, token(`s${i}`), { 'x-forwarded-for': xff });
    opened.push(socket);
    const err = await connected(socket);
    const refusal = (err as { data?: { code?: string; message?: string } } | null)?.data;
    results.push(err ? `${refusal?.code}: ${refusal?.message ?? err.message}` : null);
  }
  return results;
}

describe('TRUST_PROXY unset (the default): X-Forwarded-For is ignored', () => {
  let server: TestServer;
  const sockets: Socket[] = [];
  beforeAll(async () => {
    server = await startServer(LIMITS);
  });
  afterAll(async () => {
    for (const s of sockets) s.close();
    await server.stop();
  });

  test('requests naming different clients share the peer\'s rate limit', async () => {
    // Twice the burst at once, each naming another client: the budget refills 1 a second, so some are refused.
    const got = await statuses(server, Array.from({ length: BURST * 2 }, (_, i) => `198.51.100.${i + 1}`));
    expect(count(got, 200) + count(got, 429)).toBe(BURST * 2);
    expect(count(got, 429)).toBeGreaterThan(0);
  });

  test('sockets naming different clients share the peer\'s connection cap', async () => {
    await budgetsRefilled();
    const got = await openSockets(server, ['198.51.100.1', '198.51.100.2', '198.51.100.3'], sockets);
    expect(got.slice(0, PER_IP)).toEqual([null, null]);
    expect(got[PER_IP]).toMatch(/^RATE_LIMITED: .*MAX_CONNECTIONS_PER_IP/);
  });
});

describe('TRUST_PROXY=loopback: each forwarded client has its own budget and cap', () => {
  let server: TestServer;
  const sockets: Socket[] = [];
  beforeAll(async () => {
    server = await startServer({ ...LIMITS, TRUST_PROXY: 'loopback' });
  });
  afterAll(async () => {
    for (const s of sockets) s.close();
    await server.stop();
  });

  test('three clients behind the proxy each spend a whole burst; one that goes over is refused, the others are not', async () => {
    // Three bursts at once: as many requests as one peer's budget three times over, none refused.
    const clients = ['198.51.100.1', '198.51.100.2', '198.51.100.3'];
    const got = await statuses(server, clients.flatMap((c) => Array<string>(BURST).fill(c)));
    expect(count(got, 200)).toBe(BURST * 3);
    // The first goes over its own budget; a fourth client is untouched by that.
    const over = await statuses(server, Array<string>(BURST * 2).fill(clients[0]));
    expect(count(over, 429)).toBeGreaterThan(0);
    expect(await statuses(server, ['198.51.100.4'])).toEqual([200]);
    // The client is the address the trusted proxy saw: a further address the client wrote before it is not believed.
    // (A burst's worth: were 203.0.113.9 believed, its fresh budget would take them all.)
    const spoofed = await statuses(server, Array<string>(BURST).fill(`203.0.113.9, ${clients[0]}`));
    expect(count(spoofed, 429)).toBeGreaterThan(0);
  });

  // Keyed on the whole address, an IPv6 client (a /64 per host) had a fresh budget and cap at each address it picked.
  test('an IPv6 client picking a new address of its /64 for each request or socket keeps one budget and one cap', async () => {
    const rotating = Array.from({ length: BURST * 2 }, (_, i) => `2001:db8:7:1:${(i + 1).toString(16)}::${(i + 1).toString(16)}`);
    const got = await statuses(server, rotating);
    expect(count(got, 200) + count(got, 429)).toBe(BURST * 2);
    expect(count(got, 429)).toBeGreaterThan(0);
    // Another /64 is another client.
    expect(await statuses(server, ['2001:db8:7:2::1'])).toEqual([200]);
    const sockets6 = await openSockets(server, ['2001:db8:9:1::1', '2001:db8:9:1::2', '2001:db8:9:1::3'], sockets);
    expect(sockets6.slice(0, PER_IP)).toEqual([null, null]);
    expect(sockets6[PER_IP]).toMatch(/^RATE_LIMITED: .*MAX_CONNECTIONS_PER_IP/);
  });

  test('the connection cap is per forwarded client at the socket handshake', async () => {
    await budgetsRefilled();
    const got = await openSockets(server, ['198.51.100.1', '198.51.100.1', '198.51.100.2', '198.51.100.2', '198.51.100.3', '198.51.100.3', '198.51.100.1'], sockets);
    expect(got.slice(0, 6)).toEqual([null, null, null, null, null, null]);
    expect(got[6]).toMatch(/^RATE_LIMITED: .*MAX_CONNECTIONS_PER_IP/);
  });
});
