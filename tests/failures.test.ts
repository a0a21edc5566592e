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
    RUN_TIMEOUT_MS: '2000',
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
    return metricValue(m, 'atoll_cells_alive') === 2 && metricValue(m, 'atoll_threads_alive') === 6 && metricValue(m, 'atoll_runs_active') === 0;
  }, 15_000);
}

const cases: [mode: string, status: string, code: string][] = [
  ['throw', 'failed', 'AGENT_ERROR'],
  ['exit', 'failed', 'WORKER_CRASHED'],
  ['hang', 'timeout', 'TIMEOUT'],
  ['oom_heap', 'failed', 'OUT_OF_MEMORY'],
  ['oom_fatal', 'failed', 'OUT_OF_MEMORY'],
];

test.each(cases)('chaos %s: the failing run ends %s/%s and the others are untouched', async (mode, status, code) => {
  expect(await fullStrength()).toBe(true);
  const deathsBefore = metricValue(await scrape(), 'atoll_cell_deaths_total');
  const bad = await victim.start({ agent: 'chaos', input: { mode, text: mode } });
  await victim.waitForEvent(bad.run_id, 'agent_started');
  // Four healthy runs of other users, long enough to be in flight when the failure lands.
  const healthy = await Promise.all(
    [0, 1, 2, 3].map((i) => others[i % 2].start({ agent: 'streamer', input: { text: `h${i}`, parts: 8, delay: 150 } }).then((r) => ({ ...r, client: others[i % 2], i }))),
  );
  const badEnd = terminal(await victim.waitForRun(bad.run_id));
  expect(badEnd.payload).toMatchObject({ status, success: false, error: { code } });

  const badCell = (await victim.http('GET', `/v1/runs/${bad.run_id}`)).body.ran_on.cell as string;
  let completedElsewhere = 0;
  for (const h of healthy) {
    const end = terminal(await h.client.waitForRun(h.run_id));
    const ranOn = (await h.client.http('GET', `/v1/runs/${h.run_id}`)).body.ran_on.cell;
    if (mode === 'oom_fatal' && ranOn === badCell) {
      // Shared the dying cell: it finished before the death, or failed with a terminal event, never left hanging.
      if (end.payload.status !== 'completed') {
        expect(end.payload.error.code).toMatch(/^(WORKER_CRASHED|OUT_OF_MEMORY)$/);
        continue;
      }
    }
    expect(end.payload).toMatchObject({ status: 'completed', final_response: Array.from({ length: 8 }, (_, p) => `h${h.i}-${p} `).join('') });
    completedElsewhere++;
  }
  expect(completedElsewhere).toBeGreaterThan(0);

  expect((await httpCall(server.url, 'GET', '/healthz')).status).toBe(200);
  expect(await fullStrength()).toBe(true);
  const deathsAfter = metricValue(await scrape(), 'atoll_cell_deaths_total');
  expect((deathsAfter || 0) - (deathsBefore || 0)).toBe(mode === 'oom_fatal' ? 1 : 0);

  // And the server still serves new runs on every kind of failure.
  const after = await others[0].start({ agent: 'echo', input: `after ${mode}` });
  expect(terminal(await others[0].waitForRun(after.run_id)).payload.final_response).toBe(`after ${mode}`);
});

test('a killed cell: every run inside gets its terminal event and a replacement cell serves', async () => {
  expect(await fullStrength()).toBe(true);
  const runs = await Promise.all([0, 1, 2, 3].map((i) => others[0].start({ agent: 'chaos', input: { mode: 'slow', text: 's', ms: 1500 + i } })));
  await Promise.all(runs.map((r) => others[0].waitForEvent(r.run_id, 'agent_started')));
  const cellPids = server.logs.filter((l) => l.msg === 'cell ready').map((l) => l.pid as number);
  const where = (await others[0].http('GET', `/v1/runs/${runs[0].run_id}`)).body.ran_on.cell as string;
  const pid = server.logs.filter((l) => l.msg === 'cell ready' && l.cell === where).map((l) => l.pid as number)[0];
  expect(cellPids).toContain(pid);
  process.kill(pid, 'SIGKILL');
  for (const r of runs) {
    const end = terminal(await others[0].waitForRun(r.run_id));
    const ranOn = (await others[0].http('GET', `/v1/runs/${r.run_id}`)).body.ran_on.cell;
    if (ranOn === where) expect(end.payload.error).toMatchObject({ code: 'WORKER_CRASHED' });
    else expect(end.payload).toMatchObject({ status: 'completed', final_response: expect.stringMatching(/^slept 15\d\d ms$/) });
  }
  expect(await fullStrength()).toBe(true);
  expect(metricValue(await scrape(), 'atoll_cell_deaths_total', { cause: 'killed' })).toBe(1);
  expect(server.logs.some((l) => l.msg === 'cell ready' && l.cell === where.replace(/g(\d+)$/, (_, g) => `g${Number(g) + 1}`))).toBe(true);
}, 60_000);
