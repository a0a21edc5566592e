/**
 * Each failure kind, with other users' runs in flight: the failing run gets its exact terminal code, every
 * other run completes (run again in quarantine exactly when it shared a dying cell), the server keeps serving,
 * the pool returns to full strength, and every run's log holds exactly one agent_completed, read back over HTTP.
 *
 * The other users' runs are `gated`: each waits until the test opens its gate, which it does only once the
 * failing run has ended, so they are in flight when the failure lands whatever the machine's speed.
 */
import { FIXTURE_AGENTS, startServer, type TestServer } from './helpers/server';
import { UserClient, eventually, httpCall, metricValue, terminal, type Envelope } from './helpers/client';
import { expectPersistedTerminal } from './helpers/run-checks';

// One victim user runs every failure kind in turn, each with company in its cell: its user is not put in
// quarantine for the cells it kills (that is tests/cell-killers.test.ts), or its later kills would be alone.
const BASE_ENV = { AGENTS_DIR: FIXTURE_AGENTS, ENABLE_CHAOS_AGENTS: '1', RUN_MEMORY_MB: '64', CELL_KILLER_QUARANTINE_MS: '0' };

interface Scenario {
  server: TestServer;
  victim: UserClient;
  others: UserClient[];
  cells: number;
}

async function openScenario(env: Record<string, string>, bystanders: number): Promise<Scenario> {
  const server = await startServer({ ...BASE_ENV, ...env });
  const victim = await UserClient.connect(server.url, 'victim');
  const others = await Promise.all(Array.from({ length: bystanders }, (_, i) => UserClient.connect(server.url, `bystander-${i + 1}`)));
  return { server, victim, others, cells: Number(env.CELLS) };
}

async function closeScenario(s: Scenario | undefined): Promise<void> {
  if (!s) return;
  [s.victim, ...s.others].forEach((c) => c.close());
  await s.server.stop();
}

const scrape = async (s: Scenario) => (await httpCall(s.server.url, 'GET', '/metrics')).body as string;

async function fullStrength(s: Scenario, workersPerCell: number): Promise<boolean> {
  return eventually(async () => {
    const m = await scrape(s);
    return metricValue(m, 'atoll_cells_alive') === s.cells && metricValue(m, 'atoll_threads_alive') >= s.cells * workersPerCell && metricValue(m, 'atoll_runs_active') === 0;
  }, 60_000);
}

/** How the failure must end, and whether it kills the cell it ran in ('maybe': V8 decides, see oom_fatal). */
type Case = [mode: string, status: string, code: string, cellDies: 'no' | 'yes' | 'maybe'];

async function failureWithCompany(s: Scenario, workersPerCell: number, [mode, status, code, cellDies]: Case, runsPerBystander: number): Promise<void> {
  expect(await fullStrength(s, workersPerCell)).toBe(true);
  const before = await scrape(s);
  const gate = `gate-${mode}-${Date.now()}`;
  const openGate = () => Promise.all(s.others.map((client) => client.http('POST', '/v1/threads', { title: gate })));
  const startCompany = async () => {
    const runs = await Promise.all(
      s.others.flatMap((client, u) =>
        Array.from({ length: runsPerBystander }, (_, k) => {
          const text = `h${u}.${k}`;
          return client.start({ agent: 'gated', input: { text, gate, parts: 4 } }).then((r) => ({ ...r, client, text }));
        }),
      ),
    );
    await Promise.all(runs.map((h) => h.client.waitForEvent(h.run_id, 'agent_started', 60_000)));
    return runs;
  };
  // A hang ends by RUN_TIMEOUT_MS, which would end runs waiting beside it as well: its company starts once it
  // hangs and finishes beside it. Every other failure lands while its company waits at the gate, opened after.
  const hangs = status === 'timeout';
  let bad: { run_id: string } | null = null;
  if (hangs) {
    bad = await s.victim.start({ agent: 'chaos', input: { mode, text: mode } });
    await s.victim.waitForEvent(bad.run_id, 'agent_started', 60_000);
  }
  const healthy = await startCompany();
  const healthyCells = await Promise.all(healthy.map(async (h) => (await h.client.http('GET', `/v1/runs/${h.run_id}`)).body.ran_on.cell as string));
  if (hangs) await openGate();
  else bad = await s.victim.start({ agent: 'chaos', input: { mode, text: mode } });
  const badEnd = terminal(await s.victim.waitForRun(bad!.run_id, 150_000));
  expect(badEnd.payload).toMatchObject({ status, success: false, error: { code } });
  if (!hangs) {
    // Every gated run is still waiting: the failure landed while they were in flight.
    for (const h of healthy) expect(h.client.runEvents(h.run_id).some((e) => e.type === 'agent_completed')).toBe(false);
    await openGate();
  }

  const deaths = (metricValue(await scrape(s), 'atoll_cell_deaths_total') || 0) - (metricValue(before, 'atoll_cell_deaths_total') || 0);
  const culprit = (await s.victim.http('GET', `/v1/runs/${bad!.run_id}`)).body;
  const culpritRestarts: { cell: string }[] = culprit.isolation?.restarts ?? [];
  if (cellDies === 'no') expect(deaths).toBe(0);
  if (cellDies === 'yes') expect(deaths).toBeGreaterThanOrEqual(1);
  const cellDied = deaths > 0;
  // The culprit's first cell: the one its restart names, or (alone in it) the one it ran on.
  const culpritCell = culpritRestarts[0]?.cell ?? culprit.ran_on?.cell;
  if (cellDied) {
    // It died again alone in quarantine (if it had company) and was named: one death per cell it killed.
    expect(deaths).toBe(1 + culpritRestarts.length);
    expect(healthyCells).toContain(culpritCell);
  } else {
    expect(culpritRestarts).toEqual([]);
  }
  const reason = mode === 'abort' ? 'fatal_error' : 'out_of_memory';

  for (const [i, h] of healthy.entries()) {
    // Every healthy run completes with its exact output, also those that shared the dying cell: they were
    // run again in quarantine (run_restarted, seq still growing) while the culprit was named.
    const events = await h.client.waitForRun(h.run_id, 120_000);
    expect(terminal(events).payload).toMatchObject({ status: 'completed', final_response: [0, 1, 2, 3].map((p) => `${h.text}-${p} `).join('') });
    expect(events.map((e: Envelope) => e.seq)).toEqual(events.map((_, k) => k + 1));
    const restarted = events.filter((e) => e.type === 'run_restarted');
    const view = (await h.client.http('GET', `/v1/runs/${h.run_id}`)).body;
    if (cellDied && healthyCells[i] === culpritCell) {
      expect(restarted.map((e) => e.payload)).toEqual([{ attempt: 2, reason }]);
      expect(view.attempts).toBe(2);
      expect(view.isolation.restarts).toEqual([{ attempt: 1, cell: culpritCell, reason }]);
      expect(view.ran_on.cell).toMatch(/^quarantine\d+-g\d+$/);
    } else {
      // Not in a dying cell: untouched.
      expect(restarted).toEqual([]);
      expect(view.attempts).toBe(1);
      expect(view.ran_on.cell).toBe(healthyCells[i]);
    }
    // Persisted: exactly one terminal event, last, the one delivered.
    expect((await expectPersistedTerminal(h.client, h.run_id)).payload.status).toBe('completed');
  }
  // The failing run's own terminal event was persisted once too, whatever died with it.
  expect((await expectPersistedTerminal(s.victim, bad!.run_id)).payload).toMatchObject({ status, error: { code } });

  expect((await httpCall(s.server.url, 'GET', '/healthz')).status).toBe(200);
  expect(await fullStrength(s, workersPerCell)).toBe(true);
  // And the server still serves new runs after every kind of failure.
  const after = await s.others[0].start({ agent: 'echo', input: `after ${mode}` });
  expect(terminal(await s.others[0].waitForRun(after.run_id, 60_000)).payload.final_response).toBe(`after ${mode}`);
}

describe('thread deaths: two cells of three threads', () => {
  let s: Scenario;
  // RUN_TIMEOUT_MS: `hang` ends by it; nothing else here comes near it.
  beforeAll(async () => (s = await openScenario({ CELLS: '2', THREADS_PER_CELL: '3', RUN_TIMEOUT_MS: '15000' }, 2)));
  afterAll(() => closeScenario(s));

  const cases: Case[] = [
    ['throw', 'failed', 'AGENT_ERROR', 'no'],
    ['exit', 'failed', 'WORKER_CRASHED', 'no'],
    ['hang', 'timeout', 'TIMEOUT', 'no'],
  ];
  test.each(cases)('chaos %s: the failing run ends %s/%s and the others are untouched', (...c) => failureWithCompany(s, 3, c, 2), 180_000);
});

describe('cell deaths and memory: one serving cell, so every bystander shares the failing run\'s cell', () => {
  let s: Scenario;
  // Memory, not time, must end the out-of-memory runs, whatever the machine's load: RUN_TIMEOUT_MS is longer
  // than the test's own budget, and the CPU governor is off (on a busy machine it lowers the allocating worker
  // to nice 19, where it starves; the governor has tests of its own). One bystander run per user beside the
  // failing run fills the cell's three workers, so the failing run starts at once and shares the cell with both.
  beforeAll(async () => (s = await openScenario({ CELLS: '1', THREADS_PER_CELL: '3', RUN_TIMEOUT_MS: '600000', CPU_DEMOTE_AFTER_MS: '0' }, 2)));
  afterAll(() => closeScenario(s));

  const cases: Case[] = [
    ['abort', 'failed', 'WORKER_CRASHED', 'yes'],
    ['oom_heap', 'failed', 'OUT_OF_MEMORY', 'no'],
    // A V8 out-of-memory abort of the whole cell, or (V8 decides) a heap overflow of its worker alone:
    // either way OUT_OF_MEMORY, and the bystanders are run again exactly when the cell died.
    ['oom_fatal', 'failed', 'OUT_OF_MEMORY', 'maybe'],
  ];
  test.each(cases)('chaos %s: the failing run ends %s/%s and the others complete', (...c) => failureWithCompany(s, 3, c, 1), 240_000);
});

describe('a killed cell', () => {
  let s: Scenario;
  beforeAll(async () => (s = await openScenario({ CELLS: '2', THREADS_PER_CELL: '3' }, 1)));
  afterAll(() => closeScenario(s));

  test('every run inside gets exactly one terminal event, persisted, and a replacement cell serves', async () => {
    expect(await fullStrength(s, 3)).toBe(true);
    const user = s.others[0];
    const gate = `gate-kill-${Date.now()}`;
    const runs = await Promise.all([0, 1, 2, 3].map((i) => user.start({ agent: 'gated', input: { text: `k${i}`, gate, parts: 4 } })));
    await Promise.all(runs.map((r) => user.waitForEvent(r.run_id, 'agent_started', 60_000)));
    const cellOf = await Promise.all(runs.map(async (r) => (await user.http('GET', `/v1/runs/${r.run_id}`)).body.ran_on.cell as string));
    const where = cellOf[0];
    // Four runs on two cells of three workers: the killed cell holds some of them, the other cell the rest.
    const inside = cellOf.filter((c) => c === where).length;
    expect(inside).toBeGreaterThanOrEqual(1);
    expect(inside).toBeLessThan(runs.length);
    const pid = s.server.logs.find((l) => l.msg === 'cell ready' && l.cell === where)!.pid as number;
    process.kill(pid, 'SIGKILL');
    // No run caused the kill: every run inside is run again in quarantine; none is lost.
    expect(await eventually(() => runs.every((r, i) => cellOf[i] !== where || user.runEvents(r.run_id).some((e) => e.type === 'run_restarted')), 60_000)).toBe(true);
    await user.http('POST', '/v1/threads', { title: gate });
    for (const [i, r] of runs.entries()) {
      const events = await user.waitForRun(r.run_id, 120_000);
      expect(terminal(events).payload).toMatchObject({ status: 'completed', final_response: [0, 1, 2, 3].map((p) => `k${i}-${p} `).join('') });
      expect(events.filter((e) => e.type === 'run_restarted').map((e) => e.payload)).toEqual(cellOf[i] === where ? [{ attempt: 2, reason: 'killed' }] : []);
      expect((await expectPersistedTerminal(user, r.run_id)).payload.status).toBe('completed');
    }
    const m = await scrape(s);
    expect(metricValue(m, 'atoll_run_restarts_total', { reason: 'killed' })).toBe(inside);
    expect(await fullStrength(s, 3)).toBe(true);
    expect(metricValue(await scrape(s), 'atoll_cell_deaths_total', { cause: 'killed' })).toBe(1);
    expect(s.server.logs.some((l) => l.msg === 'cell ready' && l.cell === where.replace(/g(\d+)$/, (_, g) => `g${Number(g) + 1}`))).toBe(true);
  }, 180_000);
});
