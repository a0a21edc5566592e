/**
 * Isolation you can see: metrics move by exactly what chaos runs cause and return to idle, cells' process
 * metrics join the front's scrape, alert rules and the dashboard name only exported metrics, the metric
 * docs cannot drift, logs carry a run's ids and never its content or tokens, /readyz, and replay.
 */
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parse as parseYaml } from 'yaml';
import { FIXTURE_AGENTS, ROOT, startServer, type TestServer } from './helpers/server';
import { UserClient, eventually, httpCall, metricValue, sleep, terminal } from './helpers/client';
import { isExported, metricFamilies, promqlMetricNames } from './helpers/promql';
import { renderMetricsDoc } from '../scripts/metrics-doc';
import { readiness } from '../server/http/routes/ops';
import { userMaxima } from '../server/runs/user-stats';
import type { CellHandle } from '../server/cells/cell-handle';

const RULES = path.join(ROOT, 'ops/prometheus/atoll-rules.yml');
const DASHBOARD = path.join(ROOT, 'ops/grafana/atoll-dashboard.json');
const DOC = path.join(ROOT, 'docs/metrics.md');
/** Series Prometheus makes itself for every target (the node-down alert watches the scrape, not a metric). */
const PROMETHEUS_OWN = new Set(['up']);

/** A value that is absent from the scrape counts as 0 (a label value outside server/metrics.ts KNOWN_LABELS appears on first increment). */
const value = (text: string, name: string, labels: Record<string, string> = {}) => metricValue(text, name, labels) || 0;
const delta = (before: string, after: string, name: string, labels: Record<string, string> = {}) => value(after, name, labels) - value(before, name, labels);
/** The label values a metric's series carry for one label. */
const labelValues = (text: string, name: string, label: string) =>
  [...text.matchAll(new RegExp(`^${name}\\{[^}]*\\b${label}="([^"]+)"`, 'gm'))].map((m) => m[1]);

describe('pure parts', () => {
  test('the checked-in docs/metrics.md is exactly what the registry produces', () => {
    expect(fs.readFileSync(DOC, 'utf8')).toBe(renderMetricsDoc());
  });

  test('per-user maxima come from the busiest user, per phase', () => {
    const runs = [
      { userId: 'a', phase: 'queued' },
      { userId: 'a', phase: 'queued' },
      { userId: 'b', phase: 'queued' },
      { userId: 'a', phase: 'running' },
      { userId: 'b', phase: 'running' },
      { userId: 'b', phase: 'running' },
      { userId: 'b', phase: 'dispatched' },
      { userId: 'c', phase: 'finished' },
    ] as const;
    expect(userMaxima(runs)).toEqual({ queuedRuns: 2, activeRuns: 3, activeContexts: 2 });
    expect(userMaxima([])).toEqual({ queuedRuns: 0, activeRuns: 0, activeContexts: 0 });
  });

  test('readiness names each failing check', async () => {
    const cell = (state: string, quarantine = false) => ({ state, quarantine }) as unknown as CellHandle;
    const ok = await readiness({ ping: async () => undefined, cells: () => [cell('ready'), cell('starting'), cell('ready', true)], draining: () => false });
    expect(ok).toEqual({ ready: true, checks: { database: 'ok', cells: '1/2 serving', draining: false }, failing: [], degraded: [] });

    const down = await readiness({ ping: () => Promise.reject(new Error('SQLITE_CANTOPEN')), cells: () => [cell('dead'), cell('starting')], draining: () => true });
    expect(down).toEqual({ ready: false, checks: { database: 'unreachable: SQLITE_CANTOPEN', cells: '0/2 serving', draining: true }, failing: ['database', 'cells', 'draining'], degraded: [] });

    const hung = await readiness({ ping: () => new Promise(() => undefined), cells: () => [cell('ready')], draining: () => false });
    expect(hung.failing).toEqual(['database']);
    expect(hung.checks.database).toMatch(/no answer in \d+ ms/);

    // Several nodes: Redis is reported, and a Redis that fails or hangs degrades the node without making it unready.
    const base = { ping: async () => undefined, cells: () => [cell('ready')], draining: () => false };
    expect(await readiness({ ...base, pingRedis: async () => undefined })).toEqual({ ready: true, checks: { database: 'ok', cells: '1/1 serving', draining: false, redis: 'ok' }, failing: [], degraded: [] });
    const redisDown = await readiness({ ...base, pingRedis: () => Promise.reject(new Error('the command connection is reconnecting (connect ECONNREFUSED 127.0.0.1:6379)')) });
    expect(redisDown).toEqual({
      ready: true,
      checks: { database: 'ok', cells: '1/1 serving', draining: false, redis: 'unreachable: the command connection is reconnecting (connect ECONNREFUSED 127.0.0.1:6379)' },
      failing: [],
      degraded: ['redis'],
    });
    const redisHung = await readiness({ ...base, pingRedis: () => new Promise(() => undefined) });
    expect([redisHung.ready, redisHung.degraded, redisHung.checks.redis]).toEqual([true, ['redis'], expect.stringMatching(/^unreachable: no answer in \d+ ms$/)]);
  });
});

describe('a live server under chaos', () => {
  let server: TestServer;
  let u: UserClient;
  let other: UserClient;
  const scrape = async () => (await httpCall(server.url, 'GET', '/metrics')).body as string;
  const run = async (client: UserClient, input: Record<string, unknown>, agent = 'chaos') => {
    const { run_id } = await client.start({ agent, input });
    return { run_id, end: terminal(await client.waitForRun(run_id, 30_000)) };
  };
  /** Nothing in flight, every gauge of activity at zero, both cells serving. */
  const idle = () =>
    eventually(async () => {
      const m = await scrape();
      return (
        value(m, 'atoll_cells_alive') === 2 &&
        value(m, 'atoll_runs_active') === 0 &&
        value(m, 'atoll_runs_queued') === 0 &&
        value(m, 'atoll_threads_busy') === 0 &&
        value(m, 'atoll_execution_contexts_active') === 0 &&
        value(m, 'atoll_agent_instances_live') === 0
      );
    }, 20_000);

  beforeAll(async () => {
    server = await startServer({
      AGENTS_DIR: FIXTURE_AGENTS,
      ENABLE_CHAOS_AGENTS: '1',
      RUN_MEMORY_MB: '64',
      CELL_MEMORY_MB: '700',
      ALERT_ACTIVE_CONTEXTS: '7',
      NODE_ID: 'observed-node',
      // The abort test counts the cells that went away: an idle cell replaced for its grown memory (one worker per
      // user after the 200-run burst) would be a second one; rejuvenation is not what these tests are about.
      CELL_RECYCLE_RSS_RATIO: '0',
      // The burst below comes from 20 users on 4 workers: with one user per worker (the default) it would start a
      // worker per run, and on a starved machine outlast its test. It measures scrapes, not the wall between users.
      THREAD_REUSE: 'any',
      // The burst below sends 200 runs from one address; per-user budgets stay at their defaults.
      RATE_LIMIT_IP_PER_SEC: '100000',
      RATE_LIMIT_IP_BURST: '100000',
    });
    [u, other] = await Promise.all([UserClient.connect(server.url, 'observer'), UserClient.connect(server.url, 'bystander')]);
  });
  afterAll(async () => {
    [u, other].forEach((c) => c.close());
    await server.stop();
  });

  test('/readyz answers ready with every check named', async () => {
    const res = await httpCall(server.url, 'GET', '/readyz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ready', checks: { database: 'ok', cells: '2/2 serving', draining: false }, failing: [], degraded: [] });
  });

  test('each live cell\'s process metrics are in the front\'s scrape, labelled by cell; every series carries the node', async () => {
    let m = '';
    const cellsReported = await eventually(async () => {
      m = await scrape();
      const cells = labelValues(m, 'atoll_cell_memory_bytes', 'cell');
      return cells.length > 0 && new Set(cells).size === 2 && [...new Set(cells)].every((c) => labelValues(m, 'process_cpu_seconds_total', 'cell').includes(c));
    }, 10_000);
    expect(cellsReported).toBe(true);
    const cells = [...new Set(labelValues(m, 'atoll_cell_memory_bytes', 'cell'))].sort();
    expect([...new Set(labelValues(m, 'process_resident_memory_bytes', 'cell'))].sort()).toEqual(cells);
    // Read inside the cell, whose permission model keeps /proc/self from it (prom-client's source): a real size.
    for (const cell of cells) expect(value(m, 'process_resident_memory_bytes', { cell })).toBeGreaterThan(20 * 1024 * 1024);
    expect(labelValues(m, 'process_open_fds', 'cell')).toEqual([]);
    expect([...new Set(labelValues(m, 'nodejs_heap_size_used_bytes', 'cell'))].sort()).toEqual(cells);
    // The front's own series: one sample each, labelled with the node only.
    expect(m).toMatch(/^process_cpu_seconds_total\{node="observed-node"\} \d/m);
    expect(m).toMatch(/^nodejs_eventloop_lag_p99_seconds\{node="observed-node"\} \d/m);
    // Every sample, the front's and the cells' alike, names this node (NODE_ID), and no other.
    const samples = m.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
    expect(samples.length).toBeGreaterThan(100);
    expect(samples.filter((line) => !/^[a-zA-Z_:][a-zA-Z0-9_:]*\{(?:[^}]*,)?node="observed-node"[,}]/.test(line))).toEqual([]);
    expect(samples.filter((line) => /^process_cpu_seconds_total\{/.test(line) && line.includes('cell="')).length).toBe(2);
    // One HELP/TYPE per family even though several processes report it.
    expect(m.match(/^# TYPE process_cpu_seconds_total /gm)).toHaveLength(1);
    expect(value(m, 'atoll_alert_active_contexts_threshold')).toBe(7);
  });

  test('3 throwing runs move the run counters by exactly 3 and the isolation ratios not at all', async () => {
    expect(await idle()).toBe(true);
    const before = await scrape();
    const ends = await Promise.all([1, 2, 3].map((i) => run(u, { mode: 'throw', text: `t${i}` })));
    ends.forEach(({ end }) => expect(end.payload.error.code).toBe('AGENT_ERROR'));
    expect(await idle()).toBe(true);
    const after = await scrape();
    expect(delta(before, after, 'atoll_runs_accepted_total')).toBe(3);
    expect(delta(before, after, 'atoll_runs_started_total')).toBe(3);
    expect(delta(before, after, 'atoll_runs_finished_total', { status: 'failed', code: 'AGENT_ERROR' })).toBe(3);
    expect(delta(before, after, 'atoll_runs_finished_total')).toBe(3);
    expect(delta(before, after, 'atoll_run_duration_seconds_count')).toBe(3);
    expect(delta(before, after, 'atoll_run_queue_wait_seconds_count')).toBe(3);
    // The chaos agent emits agent_thinking before it throws: one first event per run.
    expect(delta(before, after, 'atoll_run_time_to_first_event_seconds_count')).toBe(3);
    expect(delta(before, after, 'atoll_cleanup_duration_seconds_count')).toBe(3);
    expect(delta(before, after, 'atoll_leaked_resources_total')).toBe(0);
    expect(delta(before, after, 'atoll_worker_recycles_total')).toBe(0);
    expect(delta(before, after, 'atoll_cell_deaths_total')).toBe(0);
    expect(delta(before, after, 'atoll_collateral_runs_total')).toBe(0);
    expect(delta(before, after, 'atoll_events_dropped_total')).toBe(0);
    // message_received, agent_started, agent_thinking, agent_completed.
    expect(delta(before, after, 'atoll_events_relayed_total')).toBe(12);
    expect(value(after, 'atoll_request_isolation_score')).toBe(1);
    expect(value(after, 'atoll_failure_containment_rate')).toBe(1);
  });

  test('a leak_timer run: one timer leaked, one recycle for leaked_resources, and the isolation score drops', async () => {
    const before = await scrape();
    const { end } = await run(u, { mode: 'leak_timer', text: 'leak' });
    expect(end.payload.status).toBe('completed');
    expect(await idle()).toBe(true);
    const after = await scrape();
    expect(delta(before, after, 'atoll_leaked_resources_total', { kind: 'timer' })).toBe(1);
    expect(delta(before, after, 'atoll_leaked_resources_total')).toBe(1);
    expect(delta(before, after, 'atoll_worker_recycles_total', { reason: 'leaked_resources' })).toBe(1);
    expect(delta(before, after, 'atoll_worker_recycles_total')).toBe(1);
    expect(delta(before, after, 'atoll_globals_left_behind_total')).toBe(0);
    expect(delta(before, after, 'atoll_cross_request_contamination_total')).toBe(0);
    expect(delta(before, after, 'atoll_runs_finished_total', { status: 'completed', code: 'none' })).toBe(1);
    // 4 runs finished so far, 1 with a violation.
    expect(value(after, 'atoll_request_isolation_score')).toBeCloseTo(0.75, 10);
    expect(value(after, 'atoll_failure_containment_rate')).toBe(1);
  });

  test('per-user maxima and thread gauges follow the runs in flight, then every activity gauge returns to zero', async () => {
    const slow = (client: UserClient, i: number) => client.start({ agent: 'chaos', input: { mode: 'slow', text: `s${i}`, ms: 2500 } });
    const mine = await Promise.all([slow(u, 1), slow(u, 2)]);
    const theirs = await slow(other, 3);
    await Promise.all([...mine.map((r) => u.waitForEvent(r.run_id, 'agent_started')), other.waitForEvent(theirs.run_id, 'agent_started')]);
    let m = '';
    const seen = await eventually(async () => {
      m = await scrape();
      return value(m, 'atoll_execution_contexts_active') === 3;
    }, 5000);
    expect(seen).toBe(true);
    expect(value(m, 'atoll_runs_active')).toBe(3);
    expect(value(m, 'atoll_threads_busy')).toBe(3);
    expect(value(m, 'atoll_threads_idle')).toBe(value(m, 'atoll_threads_alive') - 3);
    expect(value(m, 'atoll_pool_utilization_ratio')).toBeCloseTo(3 / value(m, 'atoll_threads_alive'), 10);
    expect(value(m, 'atoll_user_runs_active_max')).toBe(2);
    expect(value(m, 'atoll_user_execution_contexts_active_max')).toBe(2);
    expect(value(m, 'atoll_user_runs_queued_max')).toBe(0);

    await Promise.all([...mine.map((r) => u.waitForRun(r.run_id)), other.waitForRun(theirs.run_id)]);
    expect(await idle()).toBe(true);
    m = await scrape();
    for (const gauge of [
      'atoll_runs_active',
      'atoll_runs_queued',
      'atoll_threads_busy',
      'atoll_execution_contexts_active',
      'atoll_agent_instances_live',
      'atoll_pool_utilization_ratio',
      'atoll_user_runs_active_max',
      'atoll_user_runs_queued_max',
      'atoll_user_execution_contexts_active_max',
    ]) {
      expect([gauge, metricValue(m, gauge)]).toEqual([gauge, 0]);
    }
    expect(value(m, 'atoll_threads_idle')).toBe(value(m, 'atoll_threads_alive'));
  });

  // How fast a scrape answers under load is measured by the bench (scripts/bench.ts), not asserted here: a
  // starved CI machine could fail any number. What must hold under load: every scrape answers, complete.
  test('scrapes during a burst of 200 runs all answer 200 with the run gauges and counters, and see the runs in flight', async () => {
    const users = await Promise.all(Array.from({ length: 20 }, (_, i) => UserClient.connect(server.url, `burst-${i}`)));
    const scrapes: { status: number; inFlight: number; complete: boolean; ms: number }[] = [];
    let bursting = true;
    // Scrape back to back for as long as the burst lasts, starting before the requests.
    const scraping = (async () => {
      while (bursting) {
        const t0 = performance.now();
        const res = await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(30_000) });
        const body = await res.text();
        const series = ['atoll_runs_active', 'atoll_runs_queued', 'atoll_runs_accepted_total', 'atoll_threads_busy', 'atoll_cells_alive'];
        scrapes.push({
          status: res.status,
          inFlight: value(body, 'atoll_runs_active') + value(body, 'atoll_runs_queued'),
          complete: series.every((name) => Number.isFinite(metricValue(body, name))) && /^process_cpu_seconds_total\{cell="/m.test(body),
          ms: Math.round(performance.now() - t0),
        });
      }
    })();
    try {
      const runs = await Promise.all(users.flatMap((c, i) => Array.from({ length: 10 }, (_, j) => c.start({ agent: 'echo', input: `burst ${i}-${j}` }).then((r) => ({ c, ...r })))));
      expect(runs).toHaveLength(200);
      for (const r of runs) expect(terminal(await r.c.waitForRun(r.run_id, 60_000)).payload.status).toBe('completed');
    } finally {
      bursting = false;
      await scraping;
      users.forEach((c) => c.close());
    }
    // (The timings are printed if this fails; they are not what is checked.)
    const failed = scrapes.filter((s) => s.status !== 200 || !s.complete);
    expect({ scrapes: scrapes.length, failed: failed.length, first: failed.slice(0, 3) }).toMatchObject({ failed: 0 });
    expect({ sawRunsInFlight: scrapes.some((s) => s.inFlight > 0), scrapes: scrapes.slice(0, 10) }).toMatchObject({ sawRunsInFlight: true });
    expect(await idle()).toBe(true);
  }, 120_000);

  test('an abort run alone: one cell death, no collateral, and its replacement\'s series take its slot\'s label', async () => {
    expect(await idle()).toBe(true);
    const before = await scrape();
    const slots = [...new Set(labelValues(before, 'atoll_cell_generation', 'cell'))].filter((c) => c.startsWith('cell'));
    const generation = (text: string, slot: string) => value(text, 'atoll_cell_generation', { cell: slot });
    const startedAt = (text: string, slot: string) => value(text, 'process_start_time_seconds', { cell: slot });
    // abort, not oom_fatal: a V8 out-of-memory abort of the whole cell is likely but not certain. A user of its
    // own: the killer's later runs run in quarantine cells (tests/cell-killers.test.ts), the observer's must not.
    const aborter = await UserClient.connect(server.url, 'aborter');
    const { run_id, end } = await run(aborter, { mode: 'abort', text: 'boom' });
    expect(end.payload.error.code).toBe('WORKER_CRASHED');
    // ran_on is recorded when the cell reports the start; an abort can come first.
    const reported = (await aborter.http('GET', `/v1/runs/${run_id}`)).body.ran_on?.cell as string | undefined;
    aborter.close();
    let dead = reported ?? '';

    let after = '';
    const replaced = await eventually(async () => {
      after = await scrape();
      // The serving slot whose generation went up, and whose process series are the new process's.
      const gone = slots.filter((s) => generation(after, s) === generation(before, s) + 1 && startedAt(after, s) > startedAt(before, s));
      if (gone.length === 1) dead = `${gone[0]}-g${generation(before, gone[0]!)}`;
      const cells = new Set(labelValues(after, 'process_cpu_seconds_total', 'cell'));
      return value(after, 'atoll_cells_alive') === 2 && slots.every((s) => cells.has(s)) && gone.length === 1 && delta(before, after, 'atoll_cell_restart_seconds_count') >= 1;
    }, 40_000);
    // Where the start was last reported: the cell that died, or the quarantine cell it was re-run in.
    if (reported) expect({ reported, ok: reported === dead || /^quarantine\d+-g\d+$/.test(reported) }).toMatchObject({ ok: true });
    expect({ replaced, cellsAlive: value(after, 'atoll_cells_alive'), generations: slots.map((s) => [s, generation(before, s), generation(after, s)]), dead, restarts: delta(before, after, 'atoll_cell_restart_seconds_count') }).toMatchObject({ replaced: true });
    // If the abort took its cell down before the cell reported the start, the run went to quarantine once
    // (it could not be named from a run that had not started) and died there again: one more death, one restart.
    const restarts = delta(before, after, 'atoll_run_restarts_total');
    expect([0, 1]).toContain(restarts);
    expect(delta(before, after, 'atoll_cell_deaths_total')).toBe(1 + restarts);
    expect(delta(before, after, 'atoll_cell_deaths_total', { cause: 'fatal_error' })).toBe(1 + restarts);
    expect(delta(before, after, 'atoll_runs_finished_total', { status: 'failed', code: 'WORKER_CRASHED' })).toBe(1);
    expect(delta(before, after, 'atoll_collateral_runs_total')).toBe(0);
    // Named the culprit, alone or in quarantine: its user is in quarantine now.
    expect(delta(before, after, 'atoll_cell_killers_quarantined_total')).toBe(1);
    expect(delta(before, after, 'atoll_thread_deaths_total')).toBe(0);
    // Its replacement took its slot's label: no label names a generation, so a death adds no series.
    const slot = dead.replace(/-g\d+$/, '');
    expect(labelValues(after, 'atoll_cell_memory_bytes', 'cell')).toContain(slot);
    expect(after.match(/\b(?:cell|process)="[^"]*-g\d+"/g)).toBeNull();
    expect(value(after, 'atoll_failure_containment_rate')).toBe(1);
  }, 60_000);

  describe('replay', () => {
    test('the owner replays a run: same agent, input and thread, a new id linked to the original', async () => {
      const original = await run(u, { mode: 'throw', text: 'reproduce me' });
      const res = await u.http('POST', `/v1/runs/${original.run_id}/replay`);
      expect(res.status).toBe(202);
      const view = (await u.http('GET', `/v1/runs/${original.run_id}`)).body;
      expect(res.body).toMatchObject({ agent: 'chaos', input: view.input, thread_id: view.thread_id, replay_of: original.run_id, user_id: 'observer' });
      expect(res.body.id).not.toBe(original.run_id);
      // It fails the same way, so the failure is reproduced.
      const end = terminal(await u.waitForRun(res.body.id));
      expect(end.payload).toMatchObject({ status: 'failed', error: { code: 'AGENT_ERROR' } });
      const replayed = (await u.http('GET', `/v1/runs/${res.body.id}`)).body;
      expect(replayed).toMatchObject({ replay_of: original.run_id, attempts: 1, status: 'failed' });
      expect(view.replay_of).toBeNull();
    });

    test('another user\'s run answers exactly like an unknown one', async () => {
      const mine = await run(u, { mode: 'ok', text: 'mine' });
      const foreign = await other.http('POST', `/v1/runs/${mine.run_id}/replay`);
      const unknown = await other.http('POST', '/v1/runs/00000000-0000-4000-8000-000000000000/replay');
      expect(foreign.status).toBe(404);
      expect(foreign.body).toEqual({ error: { code: 'NOT_FOUND', message: 'no such run' } });
      expect(unknown.status).toBe(404);
      expect(unknown.body).toEqual(foreign.body);
      expect((await httpCall(server.url, 'POST', `/v1/runs/${mine.run_id}/replay`)).status).toBe(401);
    });
  });

  test('log lines about a run carry its ids; the run\'s end has timings; no token or message body reaches the logs', async () => {
    const secret = `confidential-${Date.now()}-text`;
    const echo = await run(u, { text: secret }, 'echo');
    const chatty = await run(u, { text: secret }, 'chatty');
    expect(echo.end.payload.final_response).toBe(secret);
    await sleep(300); // the front's "run finished" line follows the terminal event by a write at most

    const lines = (id: string) => server.logs.filter((l) => l.run_id === id);
    for (const id of [echo.run_id, chatty.run_id]) {
      for (const line of lines(id)) {
        expect(line).toMatchObject({ run_id: id, user_id: 'observer', thread_id: expect.any(String), cell: expect.stringMatching(/^cell\d+-g\d+$/), worker: expect.any(Number) });
      }
      const finished = lines(id).filter((l) => l.msg === 'run finished');
      expect(finished).toHaveLength(1);
      expect(finished[0]).toMatchObject({
        status: 'completed',
        attempts: 1,
        queue_wait_ms: expect.any(Number),
        time_to_first_event_ms: expect.any(Number),
        execution_time_ms: expect.any(Number),
        total_ms: expect.any(Number),
        leaks: {},
        recycled: null,
      });
    }
    // The agent's own ctx.log lines, tagged by its worker's logger; a `text` field is redacted.
    const agentLines = lines(chatty.run_id).filter((l) => l.from === 'agent');
    expect(agentLines.map((l) => l.msg)).toEqual(['chatty starts', 'chatty ends']);
    expect(agentLines[0]).toMatchObject({ fields: { text: '[redacted]', step: 1 }, agent: 'chatty', attempt: 1 });

    // Every line any process wrote (the front and its cells share stdout and stderr), JSON or not: no token,
    // no secret, no message body.
    const everyLine = [...server.stdout().split('\n').map((line) => ['stdout', line]), ...server.stderr().split('\n').map((line) => ['stderr', line])];
    expect(everyLine.filter(([, line]) => line.length > 0).length).toBeGreaterThan(server.logs.length - 1);
    const forbidden = [u.token, other.token, 'test-secret-test-secret-test-secret', secret, 'reproduce me'];
    const leaks = everyLine.filter(([, line]) => forbidden.some((f) => line.includes(f)));
    expect(leaks).toEqual([]);
  });

  test('every metric the alert rules name is exported, and each alert has its severity', async () => {
    const families = metricFamilies(await scrape());
    const doc = parseYaml(fs.readFileSync(RULES, 'utf8')) as { groups: { name: string; rules: { alert: string; expr: string; labels: { severity: string } }[] }[] };
    const rules = doc.groups.flatMap((g) => g.rules);
    expect(Object.fromEntries(rules.map((r) => [r.alert, r.labels.severity]))).toEqual({
      AtollCrossRequestContamination: 'critical',
      AtollIsolationScoreBelow100: 'critical',
      AtollSingletonAgentReuse: 'error',
      AtollAgentProbingWalls: 'error',
      AtollSlowCleanup: 'warning',
      AtollUserActiveContextsHigh: 'warning',
      AtollFailureContainmentBelow100: 'warning',
      AtollLeaksDetected: 'warning',
      AtollCellRestartingRepeatedly: 'warning',
      AtollCellKillerQuarantined: 'warning',
      AtollQueueWaitGrowing: 'warning',
      AtollFrontEventLoopLag: 'warning',
      AtollNodeDown: 'warning',
      AtollRedisUnreachable: 'warning',
    });
    const used = new Set<string>();
    for (const rule of rules) {
      const { names, errors } = promqlMetricNames(rule.expr);
      expect([rule.alert, errors]).toEqual([rule.alert, []]);
      expect([rule.alert, names.length > 0]).toEqual([rule.alert, true]);
      for (const name of names) {
        used.add(name);
        expect([rule.alert, name, isExported(name, families) || PROMETHEUS_OWN.has(name)]).toEqual([rule.alert, name, true]);
      }
    }
    // The rule compares against the configured threshold, not a number of its own.
    expect(rules.find((r) => r.alert === 'AtollUserActiveContextsHigh')!.expr).toContain('atoll_alert_active_contexts_threshold');
    expect(used.has('atoll_cleanup_duration_seconds_bucket')).toBe(true);
    // The check can fail: a name that is not exported is caught.
    expect(isExported('atoll_no_such_metric_total', families)).toBe(false);
    expect(promqlMetricNames('sum(rate(atoll_runs_started_total[5m])').errors).not.toEqual([]);
  });

  test('every metric the Grafana dashboard queries is exported', async () => {
    const families = metricFamilies(await scrape());
    const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8'));
    type Panel = { id: number; title: string; type: string; panels?: Panel[]; targets?: { expr: string }[] };
    const panels: Panel[] = dashboard.panels.flatMap((p: Panel) => [p, ...(p.panels ?? [])]);
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    const queried = new Set<string>();
    for (const panel of panels.filter((p) => p.type !== 'row')) {
      expect([panel.title, (panel.targets ?? []).length > 0]).toEqual([panel.title, true]);
      for (const target of panel.targets!) {
        const { names, errors } = promqlMetricNames(target.expr);
        expect([panel.title, target.expr, errors]).toEqual([panel.title, target.expr, []]);
        for (const name of names) {
          queried.add(name);
          expect([panel.title, name, isExported(name, families)]).toEqual([panel.title, name, true]);
        }
        // Every selector follows the node picker, so "cluster" means the selected nodes.
        const selectors = [...target.expr.matchAll(/\b(?:atoll|process|nodejs)_\w+(\{[^}]*\})?/g)];
        expect([panel.title, target.expr, selectors.length > 0 && selectors.every((m) => (m[1] ?? '').includes('node=~"$node"'))]).toEqual([panel.title, target.expr, true]);
      }
    }
    for (const variable of dashboard.templating.list.filter((v: { type: string }) => v.type === 'query')) {
      const m = /label_values\((\w+),\s*\w+\)/.exec(variable.definition);
      expect(m && isExported(m[1], families)).toBe(true);
    }
    // The node picker: the label every series carries, several nodes or all of them at once.
    expect(dashboard.templating.list.find((v: { name: string }) => v.name === 'node')).toMatchObject({
      type: 'query',
      definition: 'label_values(atoll_cells_alive, node)',
      multi: true,
      includeAll: true,
      allValue: '.*',
    });
    expect(labelValues(await scrape(), 'atoll_cells_alive', 'node')).toEqual(['observed-node']);
    // The design's panels: isolation, containment, leaks, recycling, cleanup, contexts, capacity, processes.
    for (const name of [
      'atoll_request_isolation_score',
      'atoll_failure_containment_rate',
      'atoll_cross_request_contamination_total',
      'atoll_singleton_agent_reuse_total',
      'atoll_collateral_runs_total',
      'atoll_leaked_resources_total',
      'atoll_globals_left_behind_total',
      'atoll_worker_recycles_total',
      'atoll_cleanup_duration_seconds_bucket',
      'atoll_execution_contexts_active',
      'atoll_run_time_to_first_event_seconds_bucket',
      'atoll_threads_idle',
      'atoll_pool_utilization_ratio',
      'atoll_cell_memory_bytes',
      'atoll_events_dropped_total',
      'process_cpu_seconds_total',
    ]) {
      expect([name, queried.has(name)]).toEqual([name, true]);
    }
  });

  test('docs/metrics.md lists exactly the atoll_ metrics a live server exports', async () => {
    const live = [...metricFamilies(await scrape()).keys()].filter((n) => n.startsWith('atoll_')).sort();
    const documented = [...fs.readFileSync(DOC, 'utf8').matchAll(/^\| `(atoll_\w+)` \|/gm)].map((m) => m[1]).sort();
    expect(documented).toEqual(live);
    expect(fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')).toContain('docs/metrics.md');
  });

  // Last: it stops the server.
  test('/readyz turns 503 while the server drains, naming the check', async () => {
    const slow = await u.start({ agent: 'chaos', input: { mode: 'slow', text: 'drain', ms: 3000 } });
    await u.waitForEvent(slow.run_id, 'agent_started');
    server.proc.kill('SIGTERM');
    let res: Awaited<ReturnType<typeof httpCall>> | null = null;
    const refused = await eventually(async () => {
      res = await httpCall(server.url, 'GET', '/readyz').catch(() => null);
      return res?.status === 503;
    }, 5000, 20);
    expect(refused).toBe(true);
    expect(res!.body).toEqual({ status: 'not_ready', checks: { database: 'ok', cells: '2/2 serving', draining: true }, failing: ['draining'], degraded: [] });
    // Liveness stays green while it drains: the process is alive and finishing its runs.
    expect((await httpCall(server.url, 'GET', '/healthz')).status).toBe(200);
    expect(terminal(await u.waitForRun(slow.run_id)).payload.status).toBe('completed');
  }, 30_000);
});
