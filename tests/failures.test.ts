/**
 * Each failure kind, with other users' runs in flight: the failing run gets its exact terminal code, every
 * other run not in the same cell completes, the server keeps serving and the pool returns to full strength.
 */
import { FIXTURE_AGENTS, startServer, type TestServer } from './helpers/server';
import { UserClient, eventually, httpCall, metricValue, terminal } from './helpers/client';

let server: TestServer;
let victim: UserClient;
let others: UserClient[];

beforeAll(async () => {
  server = await startServer({
    AGENTS_DIR: FIXTURE_AGENTS,
    ENABLE_CHAOS_AGENTS: '1',
    CELLS: '2',
    THREADS_PER_CELL: '3',
    // Wide enough for an out-of-memory run on a starved CI machine (0.6–3 s idle) to reach its limit first.
    RUN_TIMEOUT_MS: '15000',
    RUN_MEMORY_MB: '64',
  });
  victim = await UserClient.connect(server.url, 'victim');
  others = await Promise.all(['bystander-1', 'bystander-2'].map((u) => UserClient.connect(server.url, u)));
});
afterAll(async () => {
  [victim, ...others].forEach((c) => c.close());
  await server.stop();
});

const scrape = async () => (await httpCall(server.url, 'GET', '/metrics')).body as string;

async function fullStrength(): Promise<boolean> {
  return eventually(async () => {
    const m = await scrape();
    // 2 serving cells x 3 threads, plus the quarantine cell's thread once it exists (burst threads may linger).
    return metricValue(m, 'atoll_cells_alive') === 2 && metricValue(m, 'atoll_threads_alive') >= 6 && metricValue(m, 'atoll_runs_active') === 0;
  }, 15_000);
}

const cases: [mode: string, status: string, code: string][] = [
  ['throw', 'failed', 'AGENT_ERROR'],
  ['exit', 'failed', 'WORKER_CRASHED'],
  ['hang', 'timeout', 'TIMEOUT'],
  ['oom_heap', 'failed', 'OUT_OF_MEMORY'],
  ['oom_fatal', 'failed', 'OUT_OF_MEMORY'],
  ['abort', 'failed', 'WORKER_CRASHED'],
];

test.each(cases)('chaos %s: the failing run ends %s/%s and the others are untouched', async (mode, status, code) => {
  expect(await fullStrength()).toBe(true);
  const deathsBefore = metricValue(await scrape(), 'atoll_cell_deaths_total');
  const bad = await victim.start({ agent: 'chaos', input: { mode, text: mode } });
  // An abort can take its cell down before the cell reports the start: then there is no agent_started yet.
  await victim.waitForEvent(bad.run_id, mode === 'abort' ? 'message_received' : 'agent_started');
  // Four healthy runs of other users, long enough to be in flight when the failure lands.
  const healthy = await Promise.all(
    [0, 1, 2, 3].map((i) => others[i % 2].start({ agent: 'streamer', input: { text: `h${i}`, parts: 8, delay: 150 } }).then((r) => ({ ...r, client: others[i % 2], i }))),
  );
  const badEnd = terminal(await victim.waitForRun(bad.run_id));
  expect(badEnd.payload).toMatchObject({ status, success: false, error: { code } });

  const culprit = (await victim.http('GET', `/v1/runs/${bad.run_id}`)).body;
  for (const h of healthy) {
    // Every healthy run completes with its exact output, also those that shared the dying cell: they were
    // run again in quarantine (run_restarted, seq still growing) while the culprit was named.
    const events = await h.client.waitForRun(h.run_id);
    expect(terminal(events).payload).toMatchObject({ status: 'completed', final_response: Array.from({ length: 8 }, (_, p) => `h${h.i}-${p} `).join('') });
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    const restarted = events.filter((e) => e.type === 'run_restarted');
    if (restarted.length) {
      expect(['oom_fatal', 'abort']).toContain(mode);
      const reason = mode === 'abort' ? 'fatal_error' : 'out_of_memory';
      expect(restarted[0].payload).toEqual({ attempt: 2, reason });
      const view = (await h.client.http('GET', `/v1/runs/${h.run_id}`)).body;
      expect(view.attempts).toBe(2);
      // It shared the culprit's first cell; the culprit died again alone in quarantine and was named.
      expect(view.isolation.restarts).toEqual([{ attempt: 1, cell: culprit.isolation.restarts[0].cell, reason }]);
      // (The culprit's ran_on may still name its first cell: a start in quarantine is recorded only when the
      // cell reports it, and an abort can come first.)
      expect(culprit.isolation.restarts).toHaveLength(1);
      expect(view.ran_on.cell).toMatch(/^quarantine\d+-g\d+$/);
    }
  }

  expect((await httpCall(server.url, 'GET', '/healthz')).status).toBe(200);
  expect(await fullStrength()).toBe(true);
  const deathsAfter = metricValue(await scrape(), 'atoll_cell_deaths_total');
  // abort kills its cell, and kills the quarantine cell again if it had to be identified there; oom_fatal
  // usually does the same (a V8 abort), but may end as a plain heap overflow of its thread.
  const culpritRestarts = culprit.isolation?.restarts.length ?? 0;
  const deaths = (deathsAfter || 0) - (deathsBefore || 0);
  if (mode === 'abort') expect(deaths).toBe(1 + culpritRestarts);
  else if (mode === 'oom_fatal') expect([0, 1 + culpritRestarts]).toContain(deaths);
  else expect(deaths).toBe(0);

  // And the server still serves new runs on every kind of failure.
  const after = await others[0].start({ agent: 'echo', input: `after ${mode}` });
  expect(terminal(await others[0].waitForRun(after.run_id)).payload.final_response).toBe(`after ${mode}`);
});

test('a killed cell: every run inside gets its terminal event and a replacement cell serves', async () => {
  expect(await fullStrength()).toBe(true);
  const runs = await Promise.all([0, 1, 2, 3].map((i) => others[0].start({ agent: 'chaos', input: { mode: 'slow', text: 's', ms: 1500 + i } })));
  await Promise.all(runs.map((r) => others[0].waitForEvent(r.run_id, 'agent_started')));
  const cellPids = server.logs.filter((l) => l.msg === 'cell ready').map((l) => l.pid as number);
  const cellOf = await Promise.all(runs.map(async (r) => (await others[0].http('GET', `/v1/runs/${r.run_id}`)).body.ran_on.cell as string));
  const where = cellOf[0];
  // The front keeps a user's runs on the cell that served it lately while it has room: count who is inside.
  const inside = cellOf.filter((c) => c === where).length;
  expect(inside).toBeGreaterThanOrEqual(1);
  expect(inside).toBeLessThan(runs.length);
  const pid = server.logs.filter((l) => l.msg === 'cell ready' && l.cell === where).map((l) => l.pid as number)[0];
  expect(cellPids).toContain(pid);
  process.kill(pid, 'SIGKILL');
  // No run caused the kill: every run inside is run again in quarantine and completes; none is lost.
  let restarted = 0;
  for (const r of runs) {
    const events = await others[0].waitForRun(r.run_id);
    expect(terminal(events).payload).toMatchObject({ status: 'completed', final_response: expect.stringMatching(/^slept 15\d\d ms$/) });
    if (events.some((e) => e.type === 'run_restarted')) restarted++;
  }
  expect(restarted).toBe(inside);
  expect(metricValue(await scrape(), 'atoll_run_restarts_total', { reason: 'killed' })).toBe(inside);
  expect(await fullStrength()).toBe(true);
  expect(metricValue(await scrape(), 'atoll_cell_deaths_total', { cause: 'killed' })).toBe(1);
  expect(server.logs.some((l) => l.msg === 'cell ready' && l.cell === where.replace(/g(\d+)$/, (_, g) => `g${Number(g) + 1}`))).toBe(true);
}, 60_000);
