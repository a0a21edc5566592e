/**
 * Caps the README promises, each checked at its edge: USER_MAX_QUEUED_RUNS (the run beyond it is refused,
 * the ones before it all run), MAX_CONNECTIONS_PER_IP (the n+1-th socket is refused, also when they all
 * arrive together, and a freed slot is reusable), the run's output caps (the front never receives, stores
 * or sends more than MAX_EVENTS_PER_RUN / MAX_EVENT_BYTES / MAX_RUN_EVENT_BYTES / MAX_RESULT_BYTES allow), and ctx.db refusing
 * interactive transactions.
 */
import type { Socket } from 'socket.io-client';
import { FIXTURE_AGENTS, startServer, type TestServer } from './helpers/server';
import { UserClient, devLogin, eventually, httpCall, metricValue, terminal, type Envelope } from './helpers/client';
import { rawSocket, connected } from './helpers/raw-socket';



describe('queue and connection caps', () => {
  let server: TestServer;
  const PER_IP = 4;
  beforeAll(async () => {
    server = await startServer({
      ENABLE_CHAOS_AGENTS: '1',
      CELLS: '1',
      THREADS_PER_CELL: '1',
      USER_MAX_CONCURRENT_RUNS: '1',
      USER_MAX_QUEUED_RUNS: '2',
      MAX_CONNECTIONS_PER_IP: String(PER_IP),
    });
  });
  afterAll(() => server.stop());

  test('USER_MAX_QUEUED_RUNS: with one run going and two waiting, the next is refused OVERLOADED; the two waiting still run; another user is not refused', async () => {
    const u = await UserClient.connect(server.url, 'queuer');
    try {
      // One running (the user's only concurrent slot) until it is stopped, then two waiting: the queue is full.
      const running = await u.start({ agent: 'chaos', input: { mode: 'slow', text: 'r0', ms: 120_000 } });
      await u.waitForEvent(running.run_id, 'agent_started', 30_000);
      const waiting = [await u.start({ agent: 'chaos', input: { mode: 'slow', text: 'r1', ms: 100 } }), await u.start({ agent: 'echo', input: 'r2' })];
      const refused = await u.ack('start_agent', { agent: 'echo', input: 'r3' });
      expect(refused.error).toMatchObject({ code: 'OVERLOADED', message: expect.stringMatching(/USER_MAX_QUEUED_RUNS/), retry_after_ms: expect.any(Number) });
      const thread = (await u.http('POST', '/v1/threads', {})).body;
      const refusedHttp = await u.http('POST', `/v1/threads/${thread.id}/runs`, { agent: 'echo', input: 'r4' });
      expect(refusedHttp.status).toBe(503);
      expect(refusedHttp.body.error.code).toBe('OVERLOADED');
      expect(refusedHttp.headers.get('retry-after')).toMatch(/^\d+$/);
      // Per user: someone else still gets in.
      const other = await UserClient.connect(server.url, 'queuer-neighbour');
      const theirs = await other.start({ agent: 'echo', input: 'mine' });
      expect(terminal(await other.waitForRun(theirs.run_id, 60_000)).payload.status).toBe('completed');
      other.close();
      // The waiting runs were not lost: once the running one stops, they run; nothing refused left a trace.
      expect(await u.ack('stop_agent', { run_id: running.run_id })).toMatchObject({ run_id: running.run_id, status: 'running' });
      const ends = [];
      for (const r of [running, ...waiting]) ends.push(terminal(await u.waitForRun(r.run_id, 60_000)));
      expect(ends.map((e) => e.payload.status)).toEqual(['cancelled', 'completed', 'completed']);
      expect((await u.http('GET', `/v1/threads/${thread.id}/messages`)).body.messages).toEqual([]);
      // With the queue empty again, the user is accepted again.
      const again = await u.start({ agent: 'echo', input: 'r5' });
      expect(terminal(await u.waitForRun(again.run_id, 60_000)).payload.final_response).toBe('r5');
    } finally {
      u.close();
    }
  }, 120_000);

  test('MAX_CONNECTIONS_PER_IP: sockets opened together, from several users, get exactly the cap; a freed slot is reused', async () => {
    // The previous test's sockets are gone once the server has seen them go.
    const connections = async () => metricValue((await httpCall(server.url, 'GET', '/metrics')).body, 'atoll_socket_connections');
    expect(await eventually(async () => (await connections()) === 0, 20_000)).toBe(true);
    const tokens = await Promise.all(Array.from({ length: PER_IP * 2 }, (_, i) => devLogin(server.url, `ip-user-${i}`)));
    const sockets = tokens.map((t) => rawSocket(server.url, t));
    try {
      // All at once: the handshakes race for the slots.
      const results = await Promise.all(sockets.map(connected));
      const open = sockets.filter((_, i) => results[i] === null);
      const refused = results.filter((r): r is Error => r !== null);
      expect(open.length).toBe(PER_IP);
      expect(refused).toHaveLength(PER_IP);
      for (const err of refused) expect((err as any).data).toMatchObject({ code: 'RATE_LIMITED', message: expect.stringMatching(/MAX_CONNECTIONS_PER_IP/) });
      expect(await connections()).toBe(PER_IP);

      // One leaves: its slot is free again (once the server has seen the disconnect), for one socket only.
      open[0].close();
      let reused: Socket | null = null;
      const gotSlot = await eventually(async () => {
        reused?.close();
        reused = rawSocket(server.url, tokens[0]);
        return (await connected(reused)) === null;
      }, 20_000, 100);
      expect(gotSlot).toBe(true);
      sockets.push(reused!);
      const extra = rawSocket(server.url, tokens[1]);
      sockets.push(extra);
      expect(((await connected(extra)) as any)?.data).toMatchObject({ code: 'RATE_LIMITED' });
      // The open sockets work.
      const ack = await reused!.timeout(10_000).emitWithAck('get_thread_history', { thread_id: 'nope' });
      expect(ack.error.code).toBe('NOT_FOUND');
    } finally {
      sockets.forEach((s) => s.close());
    }
  }, 60_000);
});

describe('output caps and ctx.db', () => {
  let server: TestServer;
  let u: UserClient;
  const MAX_EVENTS = 25;
  const MAX_EVENT_BYTES = 2048;
  const MAX_RESULT_BYTES = 8192;
  const MAX_RUN_EVENT_BYTES = 20_000;
  beforeAll(async () => {
    server = await startServer({
      AGENTS_DIR: FIXTURE_AGENTS,
      MAX_EVENTS_PER_RUN: String(MAX_EVENTS),
      MAX_EVENT_BYTES: String(MAX_EVENT_BYTES),
      MAX_RESULT_BYTES: String(MAX_RESULT_BYTES),
      MAX_RUN_EVENT_BYTES: String(MAX_RUN_EVENT_BYTES),
    });
    u = await UserClient.connect(server.url, 'capped');
  });
  afterAll(async () => {
    u?.close();
    await server.stop();
  });

  /** The run's end, what the socket received and what the front stored (GET /events), and the run view. */
  async function overflow(input: Record<string, unknown>) {
    const { run_id } = await u.start({ agent: 'overflow', input: { text: String(input.mode), ...input } });
    const live = await u.waitForRun(run_id, 60_000);
    const stored = (await u.http('GET', `/v1/runs/${run_id}/events?limit=1000`)).body.events as Envelope[];
    const view = (await u.http('GET', `/v1/runs/${run_id}`)).body;
    const agentEvents = (events: Envelope[]) => events.filter((e) => ['agent_thinking', 'partial_result', 'tool_executing', 'tool_completed'].includes(e.type));
    return { end: terminal(live), live, stored, view, agentEvents };
  }

  test.each(['events', 'events_swallowed'])('MAX_EVENTS_PER_RUN (%s): LIMIT_EXCEEDED, and the front receives, stores and sends at most the cap', async (mode) => {
    const r = await overflow({ mode, n: MAX_EVENTS * 20 });
    // What reached the front first, then the code: a cap that is checked after the event went out still ends
    // the run with LIMIT_EXCEEDED, one event too late.
    expect(r.agentEvents(r.stored).length).toBeLessThanOrEqual(MAX_EVENTS);
    expect(r.agentEvents(r.stored).length).toBeGreaterThan(0);
    expect(r.agentEvents(r.live)).toEqual(r.agentEvents(r.stored));
    expect(r.end.payload).toMatchObject({ status: 'failed', error: { code: 'LIMIT_EXCEEDED', message: expect.stringMatching(/MAX_EVENTS_PER_RUN/) } });
    // The log holds the engine's events around them, numbered without gaps.
    expect(r.stored.map((e) => e.seq)).toEqual(r.stored.map((_, i) => i + 1));
  });

  test('MAX_EVENT_BYTES: an event over it never leaves the thread; LIMIT_EXCEEDED', async () => {
    const r = await overflow({ mode: 'event_bytes', bytes: MAX_EVENT_BYTES * 50 });
    expect(r.agentEvents(r.stored)).toEqual([]);
    for (const e of [...r.stored, ...r.live]) expect(Buffer.byteLength(JSON.stringify(e.payload))).toBeLessThan(MAX_EVENT_BYTES);
    expect(r.end.payload).toMatchObject({ status: 'failed', error: { code: 'LIMIT_EXCEEDED', message: expect.stringMatching(/MAX_EVENT_BYTES/) } });
  });

  // Each event under MAX_EVENT_BYTES, fewer than MAX_EVENTS_PER_RUN: the default caps let one run send 655 MB, all of
  // it held by the front on its way to the log (helper-80: +650 MiB of its memory per run).
  test('MAX_RUN_EVENT_BYTES: the event that takes the run past it never leaves the thread; LIMIT_EXCEEDED', async () => {
    const r = await overflow({ mode: 'run_event_bytes', n: 20, bytes: 2000 });
    const bytes = (events: Envelope[]) => r.agentEvents(events).reduce((n, e) => n + Buffer.byteLength(JSON.stringify(e.payload)), 0);
    expect(r.agentEvents(r.stored).length).toBeGreaterThan(0);
    expect(bytes(r.stored)).toBeLessThanOrEqual(MAX_RUN_EVENT_BYTES);
    expect(r.agentEvents(r.live)).toEqual(r.agentEvents(r.stored));
    expect(r.end.payload).toMatchObject({ status: 'failed', error: { code: 'LIMIT_EXCEEDED', message: expect.stringMatching(/MAX_RUN_EVENT_BYTES/) } });
  });

  test('MAX_RESULT_BYTES: a result over it is neither stored nor sent; LIMIT_EXCEEDED', async () => {
    const r = await overflow({ mode: 'result_bytes', bytes: MAX_RESULT_BYTES * 50 });
    expect(r.view.result).toBeNull();
    expect(JSON.stringify(r.stored).length).toBeLessThan(MAX_RESULT_BYTES);
    expect(JSON.stringify(r.live).length).toBeLessThan(MAX_RESULT_BYTES);
    const messages = (await u.http('GET', `/v1/threads/${r.end.thread_id}/messages`)).body.messages;
    expect(JSON.stringify(messages).length).toBeLessThan(MAX_RESULT_BYTES);
    expect(r.end.payload).toMatchObject({ status: 'failed', final_response: null, error: { code: 'LIMIT_EXCEEDED', message: expect.stringMatching(/MAX_RESULT_BYTES/) } });
  });

  test('ctx.db refuses an interactive transaction: the callback never runs, the agent gets an error naming it, ctx.db still answers', async () => {
    const r = await overflow({ mode: 'transaction' });
    expect(r.end.payload.status).toBe('completed');
    const out = r.end.payload.final_response;
    expect(out.ran).toBe(false);
    expect(out.error).toMatchObject({ code: 'DB_UNSUPPORTED', message: expect.stringMatching(/no transactions/) });
    expect(out.own).toEqual(['transaction']);
  });
});
