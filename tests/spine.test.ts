/**
 * The seed's scenarios and the event contract, against a real server, real sockets and a real SQLite file.
 */
import { FIXTURE_AGENTS, startServer, type TestServer } from './helpers/server';
import { FRONT_DB_CONNECTIONS } from './helpers/test-database';
import { UserClient, eventually, httpCall, metricValue, terminal, type Envelope } from './helpers/client';

let server: TestServer;
const clients: UserClient[] = [];
const connect = async (user: string) => {
  const c = await UserClient.connect(server.url, user);
  clients.push(c);
  return c;
};

beforeAll(async () => {
  // No rejuvenation: a cell idle for 5 s after its workers loaded their database clients has grown past 1.3× its
  // baseline and would be replaced, taking the connections the lazy-client test counts (a starved machine left one
  // cell idle that long while the other still ran). containment.test.ts tests rejuvenation.
  server = await startServer({ AGENTS_DIR: FIXTURE_AGENTS, ENABLE_CHAOS_AGENTS: '1', CELL_RECYCLE_RSS_RATIO: '0' });
});
afterAll(async () => {
  clients.forEach((c) => c.close());
  await server.stop();
});

function expectContract(events: Envelope[], runId: string) {
  expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
  expect(events[0].type).toBe('message_received');
  // A run that waited over a second for a slot was told so (run_queued) before it started.
  const started = events.findIndex((e) => e.type !== 'run_queued' && e.seq > 1);
  expect(events.slice(1, started).every((e) => e.type === 'run_queued')).toBe(true);
  expect(events[started].type).toBe('agent_started');
  expect(events.filter((e) => e.type === 'agent_completed')).toHaveLength(1);
  expect(events.at(-1)!.type).toBe('agent_completed');
  for (const e of events) {
    expect(e.run_id).toBe(runId);
    expect(Object.keys(e).sort()).toEqual(['agent_name', 'event_id', 'payload', 'run_id', 'seq', 'thread_id', 'timestamp', 'type', 'user_id']);
  }
}

test('concurrent independence: three users at once, one agent throws, the other two complete', async () => {
  const [a, b, c] = await Promise.all(['indep-a', 'indep-b', 'indep-c'].map(connect));
  const [ra, rb, rc] = await Promise.all([
    a.start({ agent: 'streamer', input: { text: 'alpha', parts: 6, delay: 20 } }),
    b.start({ agent: 'chaos', input: { mode: 'throw', text: 'x' } }),
    c.start({ agent: 'streamer', input: { text: 'gamma', parts: 6, delay: 20 } }),
  ]);
  const [ea, eb, ec] = await Promise.all([a.waitForRun(ra.run_id), b.waitForRun(rb.run_id), c.waitForRun(rc.run_id)]);
  expect(terminal(ea).payload).toMatchObject({ status: 'completed', success: true, final_response: 'alpha-0 alpha-1 alpha-2 alpha-3 alpha-4 alpha-5 ' });
  expect(terminal(eb).payload).toMatchObject({ status: 'failed', success: false, error: { code: 'AGENT_ERROR', message: 'chaos: thrown on purpose' } });
  expect(terminal(ec).payload).toMatchObject({ status: 'completed', final_response: 'gamma-0 gamma-1 gamma-2 gamma-3 gamma-4 gamma-5 ' });
});

test('state isolation: an agent that sets this.state never sees it on a later run', async () => {
  const u = await connect('stateful-user');
  const results = [];
  for (let i = 0; i < 8; i++) {
    const { run_id } = await u.start({ agent: 'stateful', input: `run ${i}` });
    results.push(terminal(await u.waitForRun(run_id)).payload.final_response);
  }
  // 8 sequential runs on 4 workers: workers are reused, instances never are.
  for (const r of results) expect(r.seen).toBeNull();
  const runs = await Promise.all(results.map((r) => u.http('GET', `/v1/runs/${r.mine.runId}`)));
  const workers = new Set(runs.map((r) => `${r.body.ran_on.cell}/${r.body.ran_on.worker}`));
  expect(workers.size).toBeLessThan(results.length);
});

test('a factory that hands out a cached instance is refused with SINGLETON_AGENT', async () => {
  const u = await connect('singleton-user');
  const codes: string[] = [];
  // Enough runs that some worker sees the class twice.
  for (let i = 0; i < 6; i++) {
    const { run_id } = await u.start({ agent: 'singleton', input: 'x' });
    codes.push(terminal(await u.waitForRun(run_id)).payload.error?.code ?? 'none');
  }
  expect(codes).toContain('none');
  expect(codes).toContain('SINGLETON_AGENT');
});

test('resource cleanup: after runs no contexts or agent instances remain and DB connections stay bounded', async () => {
  const u = await connect('cleanup-user');
  const scrape = async () => (await httpCall(server.url, 'GET', '/metrics')).body as string;
  // While a run executes, its context and instance are counted: the gauges below can tell busy from idle.
  const slow = await u.start({ agent: 'chaos', input: { mode: 'slow', text: 'slow', ms: 1500 } });
  await u.waitForEvent(slow.run_id, 'agent_thinking');
  expect(await eventually(async () => metricValue(await scrape(), 'atoll_execution_contexts_active') >= 1, 3000)).toBe(true);
  expect(metricValue(await scrape(), 'atoll_agent_instances_live')).toBeGreaterThanOrEqual(1);
  await u.waitForRun(slow.run_id);
  const runs = await Promise.all(
    Array.from({ length: 24 }, (_, i) =>
      u.start({ agent: i % 3 === 0 ? 'cleanup-probe' : 'streamer', input: { text: i % 6 === 0 ? 'throw' : `r${i}`, parts: 3, delay: 5 } }),
    ),
  );
  await Promise.all(runs.map((r) => u.waitForRun(r.run_id)));
  let text = '';
  const idle = await eventually(async () => {
    text = await scrape();
    return metricValue(text, 'atoll_threads_alive') >= 4 && metricValue(text, 'atoll_execution_contexts_active') === 0 && metricValue(text, 'atoll_agent_instances_live') === 0 && metricValue(text, 'atoll_runs_active') === 0;
  }, 5000);
  expect(idle).toBe(true);
  // At most one connection per live worker (opened at its first ctx.db query) plus the front's own (SQLite:
  // reads and writes; PostgreSQL: its pool and its write connection), never one per run: 24 runs, 2 cells x (2 workers + 3 burst workers each + 1 spare) at most.
  const workersAlive = metricValue(text, 'atoll_threads_alive');
  expect(workersAlive).toBeLessThanOrEqual(2 * (2 * 4 + 1));
  expect(metricValue(text, 'atoll_db_connections', { process: 'front' })).toBe(FRONT_DB_CONNECTIONS);
  expect(metricValue(text, 'atoll_db_connections')).toBeLessThanOrEqual(workersAlive + FRONT_DB_CONNECTIONS);
});

test('each cell keeps a warm spare thread beyond its capacity, ready before any run needs it', async () => {
  // 2 cells x (THREADS_PER_CELL=2 + WARM_SPARE_THREADS=1), all of them warm once the server is idle.
  const scrape = async () => (await httpCall(server.url, 'GET', '/metrics')).body as string;
  expect(await eventually(async () => {
    const m = await scrape();
    return metricValue(m, 'atoll_runs_active') === 0 && metricValue(m, 'atoll_threads_alive') >= 6;
  }, 10_000)).toBe(true);
});

test('event contract: seq 1..n without gaps, agent_started first, one agent_completed last, log equals socket', async () => {
  const u = await connect('contract-user');
  const { run_id, thread_id } = await u.start({ agent: 'streamer', input: { text: 'c', parts: 10, delay: 2 }, correlation_id: 'corr-1' });
  const events = await u.waitForRun(run_id);
  expectContract(events, run_id);
  expect(events[0].payload).toEqual({ correlation_id: 'corr-1' });
  expect(events.map((e) => e.type)).toEqual(
    expect.arrayContaining(['agent_thinking', 'tool_executing', 'tool_completed', 'partial_result']),
  );
  for (const e of events) {
    expect(e.thread_id).toBe(thread_id);
    expect(e.user_id).toBe('contract-user');
    expect(e.agent_name).toBe('streamer');
  }
  const log = await u.http('GET', `/v1/runs/${run_id}/events`);
  expect(log.status).toBe(200);
  expect(log.body.events).toEqual(events);
  const after = await u.http('GET', `/v1/runs/${run_id}/events?after_seq=5`);
  expect(after.body.events).toEqual(events.slice(5));
  const run = await u.http('GET', `/v1/runs/${run_id}`);
  expect(run.body).toMatchObject({ status: 'completed', agent: 'streamer', result: terminal(events).payload.final_response, attempts: 1 });
  expect(run.body.ran_on.cell).toMatch(/^cell\d+-g\d+$/);
});

test('under concurrency every socket gets every event of every run, in order: nothing overtakes event 1', async () => {
  // Fast runs many at a time: a run's cell may answer before the turn that acknowledged it has ended.
  const users = await Promise.all(['burst-a', 'burst-b', 'burst-c', 'burst-d'].map(connect));
  const perSlot = 40;
  const runIds = new Map<UserClient, string[]>(users.map((u) => [u, []]));
  await Promise.all(
    users.flatMap((u) =>
      Array.from({ length: 3 }, async () => {
        for (let i = 0; i < perSlot; i++) {
          const { run_id } = await u.start({ agent: 'streamer', input: { text: 'b', parts: 2, delay: 0 } });
          runIds.get(u)!.push(run_id);
          await u.waitForRun(run_id, 15_000);
        }
      }),
    ),
  );
  for (const [u, ids] of runIds) {
    expect(ids).toHaveLength(3 * perSlot);
    for (const id of ids) expectContract(u.runEvents(id), id);
  }
}, 90_000);

test('the thread keeps the conversation: user message and the assistant final answer, in order', async () => {
  const u = await connect('history-user');
  const first = await u.start({ agent: 'echo', input: 'first question' });
  await u.waitForRun(first.run_id);
  const second = await u.start({ agent: 'echo', input: { text: 'second question' }, thread_id: first.thread_id });
  expect(second.thread_id).toBe(first.thread_id);
  await u.waitForRun(second.run_id);
  const res = await u.http('GET', `/v1/threads/${first.thread_id}/messages`);
  expect(res.body.messages.map((m: any) => [m.role, m.content])).toEqual([
    ['user', 'first question'],
    ['assistant', 'first question'],
    ['user', 'second question'],
    ['assistant', 'second question'],
  ]);
});

test('the execution context is immutable and agent output is validated at the boundary', async () => {
  const u = await connect('bad-output-user');
  const cases: Record<string, RegExp> = {
    array: /must return a string or a JSON object/,
    undefined: /must return a string or a JSON object/,
    cyclic: /not JSON-serialisable/,
    bad_event: /unknown event type "agent_completed"/,
    bad_payload: /payload\.text must be a string/,
    mutate_ctx: /read.only|Cannot assign/,
  };
  for (const [mode, message] of Object.entries(cases)) {
    const { run_id } = await u.start({ agent: 'bad-output', input: mode });
    const t = terminal(await u.waitForRun(run_id));
    expect(t.payload.error.code).toBe('AGENT_ERROR');
    expect(t.payload.error.message).toMatch(message);
  }
});

test('a thread loads its database client at its first ctx.db query, and that is not mistaken for a leak', async () => {
  // WORKER_DB_WARMUP=lazy (the default): every worker meets ctx.db first inside some run.
  const u = await connect('lazy-db-user');
  const runs = await Promise.all(Array.from({ length: 8 }, (_, i) => u.start({ agent: 'db-probe', input: { text: `lazy ${i}` } })));
  for (const r of runs) expect(terminal(await u.waitForRun(r.run_id)).payload.status).toBe('completed');
  const reports = await Promise.all(runs.map((r) => u.http('GET', `/v1/runs/${r.run_id}`)));
  for (const r of reports) {
    expect(r.body.isolation).toMatchObject({ leaks: {}, globals: [], contaminated: false });
    // Loading the compiler is CPU work: on a starved machine it can outlast CPU_DEMOTE_AFTER_MS, and a worker that
    // was lowered and may not rise again retires (the governor's rule). Nothing else may retire it.
    const i = r.body.isolation;
    expect(i.recycled === null || (i.recycled === 'priority_not_restored' && i.cpu_demoted === true)).toBe(true);
  }
  const workers = new Set(reports.map((r) => `${r.body.ran_on.cell}/${r.body.ran_on.worker}`));
  expect(workers.size).toBeGreaterThan(1);
  // Each of those workers that still serves now holds its connection (reported with the cell's stats shortly after).
  // A worker retired after a later run of the eight (lowered in priority on a starved machine) no longer serves.
  const workerOf = (r: any) => `${r.body.ran_on.cell}/${r.body.ran_on.worker}`;
  const retired = new Set(reports.filter((r) => r.body.isolation.recycled !== null).map(workerOf));
  const serving = new Set(reports.map(workerOf).filter((w) => !retired.has(w)));
  const scrape = async () => (await httpCall(server.url, 'GET', '/metrics')).body as string;
  // The cells' series only: the front's own pool on PostgreSQL closes connections idle for 30 s, so its count drifts.
  const held = (text: string) => metricValue(text, 'atoll_db_connections') - metricValue(text, 'atoll_db_connections', { process: 'front' });
  let last = NaN;
  const ok = await eventually(async () => (last = held(await scrape())) >= serving.size, 30_000);
  // On failure, what each run said of its worker.
  expect({ ok, held: last, serving: [...serving], ran: reports.map((r) => `${workerOf(r)} recycled=${r.body.isolation.recycled}`) }).toMatchObject({ ok: true });
});

test('ctx.db reaches only the run\'s own user\'s data', async () => {
  const owner = await connect('db-owner');
  const other = await connect('db-other');
  const own = await owner.start({ agent: 'echo', input: 'private note' });
  await owner.waitForRun(own.run_id);
  const probe = await other.start({ agent: 'db-probe', input: { text: 'who am i', target_thread: own.thread_id } });
  const result = terminal(await other.waitForRun(probe.run_id)).payload.final_response;
  expect(result).toEqual({ found: false, messages: 0, ownMessages: 1, ownFirst: 'who am i' });
  const self = await owner.start({ agent: 'db-probe', input: { text: 'me', target_thread: own.thread_id } });
  expect(terminal(await owner.waitForRun(self.run_id)).payload.final_response).toMatchObject({ found: true, messages: 2 });
});
