/**
 * Several nodes, one service (issue 14), with three real nodes on one PostgreSQL database and one Redis key
 * prefix: events reach a user's sockets on every node, in order, exactly once, wherever the run executes; every
 * read, replay and stop works from any node for runs on any node; USER_MAX_CONCURRENT_RUNS and FIFO hold across
 * nodes exactly (judged on the checker's audit of run rows, scripts/cluster/audit.ts); a correlation_id names one
 * run whichever nodes it is sent through. The nodes run with USER_MAX_CONCURRENT_RUNS=1, so every user's runs
 * execute one at a time, each on whichever node claims it.
 */
import { checkFifo } from '../../scripts/cluster/checks/fifo';
import { checkOccupancy } from '../../scripts/cluster/checks/occupancy';
import type { History, StartRequest } from '../../scripts/cluster/history';
import { httpCall, UserClient, type Envelope } from '../helpers/client';
import { replayOnResync, startTestCluster, type TestCluster } from '../helpers/cluster';
import { persistedEvents } from '../helpers/run-checks';

jest.setTimeout(120_000);

let cluster: TestCluster;
const open: UserClient[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ nodes: 3, audit: true, env: { USER_MAX_CONCURRENT_RUNS: '1' } });
}, 300_000);

afterAll(async () => {
  open.forEach((c) => c.close());
  await cluster?.destroy();
});

async function connect(userId: string, slot: number): Promise<UserClient> {
  const c = replayOnResync(await UserClient.connect(cluster.url(slot), userId));
  open.push(c);
  return c;
}

const stream = (o: { parts?: number; delay?: number; text: string }) => ({ agent: 'streamer', input: { parts: 6, delay: 10, ...o } });

/** The socket got exactly the logged envelopes, in order, once each. */
function expectWholeLog(got: Envelope[], log: Envelope[], where: string): void {
  expect({ where, seqs: got.map((e) => e.seq) }).toEqual({ where, seqs: log.map((e) => e.seq) });
  expect(got.map((e) => [e.event_id, e.type, e.payload])).toEqual(log.map((e) => [e.event_id, e.type, e.payload]));
}

test("a run's events reach its user's sockets on every node, in seq order, exactly once, wherever it runs", async () => {
  const sockets = await Promise.all([1, 2, 3].map((slot) => connect('ev1', slot)));
  // One run started through each node; each is claimed and executed by whichever node gets it first.
  const runs = await Promise.all(sockets.map((s, i) => s.start(stream({ text: `ev-${i}` }))));
  for (const { run_id } of runs) {
    await sockets[0].waitForRun(run_id, 60_000);
    const log = await persistedEvents(sockets[0], run_id);
    for (const [i, s] of sockets.entries()) expectWholeLog(await s.waitForRun(run_id, 60_000), log, `socket on n${i + 1}`);
    expect(log.filter((e) => e.type === 'agent_completed').map((e) => e.payload.status)).toEqual(['completed']);
  }
});

test('subscribe_run, get_thread_history, REST reads and replays work from any node for runs on any node', async () => {
  const a = await connect('rd1', 1);
  const { run_id, thread_id } = await a.start(stream({ text: 'rd' }));
  const seen = await a.waitForRun(run_id, 60_000);
  const stored = await persistedEvents(a, run_id);
  expectWholeLog(seen, stored, 'the starting socket');

  // A socket on another node, connected after the run ended, replays it whole.
  const b = await connect('rd1', 2);
  const ack = await b.ack('subscribe_run', { run_id, after_seq: 0 });
  expect(ack).toMatchObject({ run_id, last_seq: stored.length, next_after_seq: null });
  expectWholeLog(b.runEvents(run_id), stored, 'a replay on n2');

  const c = await connect('rd1', 3);
  const history = await c.ack('get_thread_history', { thread_id });
  expect(history.messages.map((m: { role: string; run_id: string | null }) => m.role)).toEqual(['user', 'assistant']);
  expect(history.messages[1].run_id).toBe(run_id);

  for (const slot of [1, 2, 3]) {
    const view = await httpCall(cluster.url(slot), 'GET', `/v1/runs/${run_id}`, undefined, a.token);
    expect({ slot, status: view.status, run: view.body.status }).toEqual({ slot, status: 200, run: 'completed' });
    const events = await httpCall(cluster.url(slot), 'GET', `/v1/runs/${run_id}/events?after_seq=0`, undefined, a.token);
    expect(events.body.events.map((e: Envelope) => e.event_id)).toEqual(stored.map((e) => e.event_id));
    const messages = await httpCall(cluster.url(slot), 'GET', `/v1/threads/${thread_id}/messages`, undefined, a.token);
    expect(messages.body.messages).toHaveLength(2);
  }
  // Another user's sockets and requests see none of it, from any node.
  const stranger = await connect('rd-other', 2);
  expect((await stranger.ack('subscribe_run', { run_id, after_seq: 0 })).error.code).toBe('NOT_FOUND');
  expect((await httpCall(cluster.url(3), 'GET', `/v1/runs/${run_id}`, undefined, stranger.token)).status).toBe(404);

  // A replay asked of node 3 runs somewhere and reaches the socket on node 1.
  const replay = await httpCall(cluster.url(3), 'POST', `/v1/runs/${run_id}/replay`, undefined, a.token);
  expect(replay.status).toBe(202);
  const replayed = await a.waitForRun(replay.body.id, 60_000);
  expect(replayed[replayed.length - 1].payload.status).toBe('completed');
  expect(stranger.events).toEqual([]);
});

test('two subscribe_run of one run at once on one socket (a resume and a resync notice): each event once', async () => {
  const a = await connect('dup1', 1);
  const { run_id } = await a.start(stream({ text: 'dup' }));
  await a.waitForRun(run_id, 60_000);
  const stored = await persistedEvents(a, run_id);
  // Judged here on what it received (not through UserClient's own contract checks, which would report the same
  // breach again when the file ends).
  const b = await UserClient.connect(cluster.url(2), 'dup1');
  try {
    const acks = await Promise.all([b.ack('subscribe_run', { run_id, after_seq: 0 }), b.ack('subscribe_run', { run_id, after_seq: 0 })]);
    expect(acks.map((x) => x.error ?? null)).toEqual([null, null]);
    // The socket's cursor says what it was sent: never an older seq again (README "Replay without gaps or duplicates").
    expectWholeLog(b.events.filter((e) => e.run_id === run_id), stored, 'overlapping replays on n2');
  } finally {
    b.socket.close();
  }
});

test('a run joined mid-stream from another node with subscribe_run: the log, then live, no gap, no duplicate', async () => {
  const a = await connect('mid1', 1);
  const { run_id } = await a.start({ agent: 'gated', input: { text: 'mid', gate: 'mid1-open', parts: 5 } });
  await a.waitForEvent(run_id, 'agent_started', 60_000);
  const late = await connect('mid1', 3);
  const ack = await late.ack('subscribe_run', { run_id, after_seq: 0 });
  expect(ack.next_after_seq).toBeNull();
  expect((await httpCall(cluster.url(2), 'POST', '/v1/threads', { title: 'mid1-open' }, a.token)).status).toBe(201);
  await a.waitForRun(run_id, 60_000);
  const stored = await persistedEvents(a, run_id);
  expectWholeLog(await late.waitForRun(run_id, 60_000), stored, 'the late socket on n3');
});

test('stop_agent and POST /cancel through any node stop a run held by any node, or waiting in the shared queue', async () => {
  const a = await connect('st1', 1);
  const b = await connect('st1', 2);
  const running = await a.start({ agent: 'gated', input: { text: 'st', gate: 'st1-never' } });
  await a.waitForEvent(running.run_id, 'agent_started', 60_000);
  // The user's cap is 1: this one waits in the shared queue behind the first.
  const waiting = await b.start({ agent: 'streamer', input: { text: 'st-w', parts: 2 } });

  const cancelled = await httpCall(cluster.url(3), 'POST', `/v1/runs/${waiting.run_id}/cancel`, undefined, a.token);
  expect(cancelled.status).toBe(202);
  const w = await a.waitForRun(waiting.run_id, 60_000);
  expect(w.map((e) => e.type).filter((t) => t !== 'run_queued')).toEqual(['message_received', 'agent_completed']);
  expect(w[w.length - 1].payload.status).toBe('cancelled');

  const stop = await b.ack('stop_agent', { run_id: running.run_id });
  expect(stop).toMatchObject({ run_id: running.run_id });
  for (const s of [a, b]) {
    const events = await s.waitForRun(running.run_id, 60_000);
    expect(events.filter((e) => e.type === 'agent_completed').map((e) => e.payload.status)).toEqual(['cancelled']);
  }
});

test('runs waiting in the shared queue hear once where they stand (run_queued), on the sockets of every node', async () => {
  const sockets = await Promise.all([1, 2, 3].map((slot) => connect('nq1', slot)));
  const running = await sockets[0].start({ agent: 'gated', input: { text: 'nq', gate: 'nq1-never' } });
  await sockets[0].waitForEvent(running.run_id, 'agent_started', 60_000);
  // The user's cap is 1: these wait behind it, accepted through two other nodes, in this order.
  const first = await sockets[1].start(stream({ text: 'nq-1', parts: 1 }));
  const second = await sockets[2].start(stream({ text: 'nq-2', parts: 1 }));
  for (const [run, position] of [[first, 1], [second, 2]] as const) {
    const notice = await sockets[0].waitForEvent(run.run_id, 'run_queued', 60_000);
    expect(notice.payload).toMatchObject({ position });
  }
  await sockets[2].ack('stop_agent', { run_id: running.run_id });
  for (const run of [first, second]) {
    await sockets[0].waitForRun(run.run_id, 60_000);
    const log = await persistedEvents(sockets[0], run.run_id);
    expect(log.filter((e) => e.type === 'run_queued')).toHaveLength(1);
    expect(log[log.length - 1]).toMatchObject({ type: 'agent_completed', payload: { status: 'completed' } });
    for (const [i, s] of sockets.entries()) expectWholeLog(await s.waitForRun(run.run_id, 60_000), log, `socket on n${i + 1}`);
  }
});

test('USER_MAX_CONCURRENT_RUNS=1 and FIFO hold across nodes: never two runs of a user held at once, claimed in order', async () => {
  const user = 'cap1';
  const token = cluster.token(user);
  const threads: string[] = [];
  for (let i = 0; i < 3; i++) threads.push((await httpCall(cluster.url(i + 1), 'POST', '/v1/threads', { title: `cap-${i}` }, token)).body.id);
  const watcher = await connect(user, 2);
  // Nine runs through the three nodes in turn, each sent once the previous one was acknowledged: FIFO orders them.
  const requests: StartRequest[] = [];
  for (let i = 0; i < 9; i++) {
    const slot = (i % 3) + 1;
    const sentAt = Date.now();
    const res = await httpCall(cluster.url(slot), 'POST', `/v1/threads/${threads[i % 3]}/runs`, { agent: 'streamer', input: { text: `cap-${i}`, parts: 3, delay: 15 } }, token);
    expect(res.status).toBe(202);
    requests.push({ id: `q${i}`, userId: user, via: 'http', node: `n${slot}`, correlationId: null, threadId: threads[i % 3], multitask: 'enqueue', agent: 'streamer', sentAt, answeredAt: Date.now(), outcome: { kind: 'accepted', runId: res.body.id, threadId: res.body.thread_id, deduplicated: false } });
  }
  for (const r of requests) await watcher.waitForRun((r.outcome as { runId: string }).runId, 90_000);

  const ids = new Set(requests.map((r) => (r.outcome as { runId: string }).runId));
  const transitions = (await cluster.transitions()).filter((t) => ids.has(t.runId));
  // A claim: the run gets an owner (a node's lease) it did not have.
  const ownerBefore = new Map<string, string | null>();
  const claims = transitions.filter((t) => {
    const claimed = t.owner !== null && (ownerBefore.get(t.runId) ?? null) === null;
    ownerBefore.set(t.runId, t.owner);
    return claimed;
  });
  expect(claims.length).toBeGreaterThanOrEqual(9); // the audit saw every claim: the check below is not vacuous
  const limits = { userMaxConcurrentRuns: 1, maxRunAttempts: 3, unrepeatableAgents: [], queueInDatabase: true };
  expect(checkOccupancy(transitions, limits)).toEqual([]);
  const rows = await cluster.query('SELECT id, "userId", "threadId", "correlationId" FROM "Run" WHERE "userId" = $1', [user]);
  const history: History = {
    runs: rows.map((r) => ({ id: r.id, userId: r.userId, threadId: r.threadId, agentName: 'streamer', status: 'completed', errorCode: null, attempts: 1, correlationId: r.correlationId, queuedAtMs: null, startedAtMs: null, finishedAtMs: null })),
    events: [],
    transitions,
    requests,
    clients: [],
  };
  expect(checkFifo(history)).toEqual([]);
  // Which nodes claimed them (informative: the lease of each first claim).
  const leases = new Set(claims.map((t) => t.owner));
  console.log(`cap test: ${claims.length} claims by ${leases.size} lease(s)`);
});

test('a correlation_id sent through three nodes at once names one run; sent again later, the same one', async () => {
  const user = 'idem1';
  const sockets = await Promise.all([1, 3].map((slot) => connect(user, slot)));
  const thread = (await httpCall(cluster.url(2), 'POST', '/v1/threads', {}, cluster.token(user))).body.id;
  const payload = { agent: 'streamer', input: { text: 'idem', parts: 2 }, thread_id: thread, correlation_id: 'same-everywhere' };
  const answers = await Promise.all([
    sockets[0].ack('start_agent', payload),
    httpCall(cluster.url(2), 'POST', `/v1/threads/${thread}/runs`, { agent: payload.agent, input: payload.input, correlation_id: payload.correlation_id }, cluster.token(user)).then((r) => ({ run_id: r.body.id, status: r.status })),
    sockets[1].ack('start_agent', payload),
  ]);
  const ids = answers.map((a) => a.run_id);
  expect(ids.every((id) => typeof id === 'string')).toBe(true);
  expect(new Set(ids).size).toBe(1);
  await sockets[0].waitForRun(ids[0], 60_000);
  const again = await httpCall(cluster.url(3), 'POST', `/v1/threads/${thread}/runs`, { agent: 'streamer', input: { text: 'idem' }, correlation_id: 'same-everywhere' }, cluster.token(user));
  expect(again.body.id).toBe(ids[0]);
  expect(again.headers.get('idempotent-replayed')).toBe('true');
  expect(await cluster.query('SELECT id FROM "Run" WHERE "userId" = $1 AND "correlationId" = $2', [user, 'same-everywhere'])).toHaveLength(1);
});
