/**
 * Redis restarting or unreachable loses no event: events are committed to PostgreSQL first, and delivery resumes
 * with a replay once Redis is back. Two nodes on a redis-server of the test's own, stopped while a run executes:
 * the user's socket on the node that does not run it must still receive the whole run, exactly once, however many
 * runs of that user it saw before. Meanwhile a new socket and a ticket are refused with REDIS_UNAVAILABLE (a
 * ticket's redeem too, however often it is retried: that is no failed handshake), and each node says so: /readyz names Redis as degraded (still ready) and atoll_redis_connected is 0.
 */
import { eventually, httpCall, metricValue, UserClient } from '../helpers/client';
import { replayOnResync, startTestCluster, type TestCluster } from '../helpers/cluster';
import { connected, rawSocket } from '../helpers/raw-socket';
import { persistedEvents } from '../helpers/run-checks';

jest.setTimeout(180_000);

let cluster: TestCluster;
const open: UserClient[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ nodes: 2, privateRedis: true });
}, 300_000);

afterAll(async () => {
  open.forEach((c) => c.close());
  await cluster?.destroy();
});

/** What a node says of its Redis: /readyz (HTTP status, checks.redis, degraded) and its connections' gauges. */
async function redisHealth(slot: number): Promise<{ status: number; redis: string; degraded: string[]; command: number; subscriber: number }> {
  const ready = await httpCall(cluster.url(slot), 'GET', '/readyz');
  const metrics = await (await fetch(`${cluster.url(slot)}/metrics`)).text();
  return {
    status: ready.status,
    redis: ready.body.checks.redis,
    degraded: ready.body.degraded,
    command: metricValue(metrics, 'atoll_redis_connected', { connection: 'command' }),
    subscriber: metricValue(metrics, 'atoll_redis_connected', { connection: 'subscriber' }),
  };
}

/** Polls redisHealth until `ok` holds (20 s at most); returns the last answer of each node. */
async function healthOfEachNode(ok: (h: Awaited<ReturnType<typeof redisHealth>>) => boolean): Promise<Awaited<ReturnType<typeof redisHealth>>[]> {
  let last: Awaited<ReturnType<typeof redisHealth>>[] = [];
  await eventually(async () => (last = await Promise.all(cluster.slots.map(redisHealth))).every(ok), 20_000, 100);
  return last;
}

test('each node reports Redis up: /readyz says ok, both connections count 1', async () => {
  expect(await healthOfEachNode((h) => h.redis === 'ok')).toEqual(cluster.slots.map(() => ({ status: 200, redis: 'ok', degraded: [], command: 1, subscriber: 1 })));
});

/** `earlier` runs of the user, seen by both sockets, then one run from start to end while Redis is down. */
async function runDuringOutage(userId: string, earlier: number): Promise<void> {
  const sockets = await Promise.all([1, 2].map(async (slot) => replayOnResync(await UserClient.connect(cluster.url(slot), userId))));
  open.push(...sockets);
  const ticket = await httpCall(cluster.url(2), 'POST', '/v1/auth/ticket', {}, sockets[0].token);
  expect(ticket.status).toBe(201);
  for (let i = 0; i < earlier; i += 10) {
    const batch = await Promise.all(Array.from({ length: Math.min(10, earlier - i) }, () => sockets[0].start({ agent: 'echo', input: 'before' })));
    for (const { run_id } of batch) await Promise.all(sockets.map((s) => s.waitForRun(run_id, 60_000)));
  }
  await cluster.redisServer!.down();
  // Each node says so, and stays ready: it still accepts and runs (below), over HTTP. Polled until /readyz names
  // the command connection too: a node's two connections notice the close one after the other, and /readyz is
  // read before the gauges (it said "the subscriber connection is reconnecting" once, under load).
  const commandDown = /^unreachable: the command connection (is |does not answer PING)/;
  const down = await healthOfEachNode((h) => h.command === 0 && h.subscriber === 0 && commandDown.test(h.redis));
  expect(down).toEqual(cluster.slots.map(() => ({ status: 200, redis: expect.stringMatching(commandDown), degraded: ['redis'], command: 0, subscriber: 0 })));
  // What needs Redis's answer is refused as such, retryable, never INTERNAL: a socket's connection slot, a ticket.
  await expect(UserClient.connect(cluster.url(2), userId)).rejects.toMatchObject({ data: { code: 'REDIS_UNAVAILABLE' } });
  expect(await httpCall(cluster.url(2), 'POST', '/v1/auth/ticket', {}, sockets[0].token)).toMatchObject({ status: 503, body: { error: { code: 'REDIS_UNAVAILABLE' } } });
  // A client retrying its ticket through the outage, more often than failed handshakes may come from one address
  // (10, RATE_LIMIT_AUTH_FAILURES_BURST): each is told to fetch a new ticket, none is counted as a failed handshake
  // (counted, the 11th would be RATE_LIMITED: the node's own limiter stands in for Redis's meanwhile).
  const refusals: unknown[] = [];
  for (let i = 0; i < 12; i++) {
    const socket = rawSocket(cluster.url(2), { ticket: ticket.body.ticket });
    const err = (await connected(socket)) as (Error & { data?: { code?: string; message?: string } }) | null;
    socket.close();
    refusals.push(err?.data?.code === 'REDIS_UNAVAILABLE' && /fetch a new ticket/.test(err.data.message ?? '') ? 'REDIS_UNAVAILABLE, fetch a new ticket' : (err?.data ?? 'connected'));
  }
  expect(refusals).toEqual(refusals.map(() => 'REDIS_UNAVAILABLE, fetch a new ticket'));
  // Accepted and run while the nodes cannot publish to each other.
  const started = await httpCall(cluster.url(1), 'POST', '/v1/threads', {}, sockets[0].token);
  expect(started.status).toBe(201);
  const run = await httpCall(cluster.url(1), 'POST', `/v1/threads/${started.body.id}/runs`, { agent: 'streamer', input: { text: 'outage', parts: 3 } }, sockets[0].token);
  expect(run.status).toBe(202);
  const runId: string = run.body.id;
  for (const deadline = Date.now() + 60_000; ; await new Promise((r) => setTimeout(r, 100))) {
    const res = await httpCall(cluster.url(1), 'GET', `/v1/runs/${runId}`, undefined, sockets[0].token);
    if (['completed', 'failed', 'cancelled', 'timeout'].includes(res.body.status)) break;
    if (Date.now() > deadline) throw new Error(`run ${runId} did not finish while Redis was down (${res.body.status})`);
  }
  // Each node refuses what needs its Redis command connection (a socket's connection slot) until that is back:
  // the next test must find both whole, not race their reconnection (up to a second apart).
  const back = cluster.slots.map((slot) => cluster.node(slot).waitForLog((l) => l.msg === 'Redis connection ready' && l.connection === 'command', 30_000));
  await cluster.redisServer!.up();
  expect((await Promise.all(back)).map((l) => l !== null)).toEqual(cluster.slots.map(() => true));
  expect(await healthOfEachNode((h) => h.redis === 'ok' && h.subscriber === 1)).toEqual(cluster.slots.map(() => ({ status: 200, redis: 'ok', degraded: [], command: 1, subscriber: 1 })));
  const log = await persistedEvents(sockets[0], runId);
  expect(log[log.length - 1].payload.status).toBe('completed');
  // Each socket, on the node that ran it or not: the whole log, once (what it got by then, if it never finished).
  const got = await Promise.all(sockets.map((s) => s.waitForRun(runId, 30_000).catch(() => s.events.filter((e) => e.run_id === runId))));
  expect(got.map((events, i) => ({ node: `n${i + 1}`, seqs: events.map((e) => e.seq) }))).toEqual(sockets.map((_, i) => ({ node: `n${i + 1}`, seqs: log.map((e) => e.seq) })));
}

/** A failure names what the nodes logged as warnings and errors meanwhile (a bare INTERNAL ack says nothing). */
async function withNodeErrors(body: () => Promise<void>): Promise<void> {
  const since = cluster.slots.map((slot) => cluster.node(slot).logs.length);
  try {
    await body();
  } catch (err) {
    // A node's log line reaches this process through its stdout pipe, which can trail the socket's ack: wait for it.
    await new Promise((r) => setTimeout(r, 1_000));
    const lines = cluster.slots.flatMap((slot, i) => cluster.node(slot).logs.slice(since[i]).filter((l) => Number(l.level) >= 40).map((l) => JSON.stringify({ node: slot, ...l })));
    throw new Error(`${String((err as Error)?.stack ?? err)}\nthe nodes' warnings and errors meanwhile:\n${lines.join('\n') || '(none)'}`);
  }
}

test('a run that starts and ends while Redis is down reaches the sockets on the other node once Redis is back', async () => {
  await withNodeErrors(() => runDuringOutage('ro1', 0));
});

test('the same for a socket that saw more than a hundred runs of its user before (found by cluster:check: only the oldest hundred were looked at)', async () => {
  await withNodeErrors(() => runDuringOutage('ro2', 101));
});
