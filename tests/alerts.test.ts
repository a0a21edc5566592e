/**
 * Alerts see the first occurrence. A counter series that appears with its first inc() appears at 1 with no
 * earlier sample, so increase() and rate() see no increase and the first leak never alerts: every counter the
 * shipped rules and dashboard read that way is exported at 0, for each label value it is known to take, from
 * start-up (server/metrics.ts KNOWN_LABELS). Then a real Prometheus (Debian's /usr/bin/prometheus) scrapes a
 * real Atoll every second with ops/prometheus/atoll-rules.yml unchanged (the alerts below have no `for:`), and
 * each critical alert, and the leak alert of the issue that found this, fires on its first occurrence.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { FIXTURE_AGENTS, ROOT, startServer, type TestServer } from './helpers/server';
import { UserClient, eventually, httpCall, terminal } from './helpers/client';
import { metricFamilies, promqlIncreaseReads, samplesOf } from './helpers/promql';
import { startPrometheus, type TestPrometheus } from './helpers/prometheus';
import { KNOWN_LABELS } from '../server/metrics';

const RULES = path.join(ROOT, 'ops/prometheus/atoll-rules.yml');
const DASHBOARD = path.join(ROOT, 'ops/grafana/atoll-dashboard.json');

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels: { severity: string };
}
const rules = (): Rule[] => (parseYaml(fs.readFileSync(RULES, 'utf8')) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);

/** Every `expr` of the dashboard, wherever it sits (panels, rows, targets). */
function dashboardExprs(node: unknown): string[] {
  if (Array.isArray(node)) return node.flatMap(dashboardExprs);
  if (!node || typeof node !== 'object') return [];
  return Object.entries(node).flatMap(([k, v]) => (k === 'expr' && typeof v === 'string' ? [v] : dashboardExprs(v)));
}

/** What is wrong with a fresh scrape for the counters read through rate() or increase(). */
function bornAtZeroProblems(exposition: string, reads: string[]): string[] {
  const families = metricFamilies(exposition);
  const problems: string[] = [];
  for (const name of reads) {
    const family = families.has(name) ? name : name.replace(/_(bucket|count|sum)$/, '');
    const type = families.get(family);
    if (type !== 'counter' && !(type === 'histogram' && family !== name)) {
      problems.push(`${name}: read with rate()/increase() but exported as ${type ?? 'nothing'}`);
      continue;
    }
    const samples = samplesOf(exposition, name);
    if (samples.length === 0) problems.push(`${name}: no series at start-up`);
    // The process_ counters (CPU seconds) count from the process's start, not events: present is what matters.
    if (!name.startsWith('atoll_')) continue;
    for (const s of samples) if (s.value !== 0) problems.push(`${name}${JSON.stringify(s.labels)}: ${s.value} at start-up, not 0`);
    const known: readonly Record<string, string>[] = (KNOWN_LABELS as Record<string, readonly Record<string, string>[]>)[name] ?? [];
    const labelled = samples.some((s) => Object.keys(s.labels).some((l) => l !== 'node' && l !== 'le'));
    if (labelled && known.length === 0) problems.push(`${name}: labelled, but server/metrics.ts KNOWN_LABELS names none of its label values`);
    for (const labels of known) {
      if (!samples.some((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))) problems.push(`${name}${JSON.stringify(labels)}: no series at start-up`);
    }
  }
  return problems;
}

const BASE_ENV = {
  // leak_timer leaves behind what lockdown would refuse (as in tests/containment.test.ts).
  THREAD_LOCKDOWN: '0',
  AGENTS_DIR: FIXTURE_AGENTS,
  ENABLE_CHAOS_AGENTS: '1',
  // One worker: the run after late-contaminator starts on the worker it contaminated.
  CELLS: '1',
  THREADS_PER_CELL: '1',
};

describe('alerts see the first occurrence', () => {
  let server: TestServer;
  let prometheus: TestPrometheus | null = null;
  let u: UserClient;
  const reads = () => [...new Set([...rules().map((r) => r.expr), ...dashboardExprs(JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')))].flatMap(promqlIncreaseReads))].sort();

  beforeAll(async () => {
    server = await startServer(BASE_ENV);
  });
  afterAll(async () => {
    u?.close();
    await prometheus?.stop();
    await server?.stop();
  });

  // First: a scrape before anything ran.
  test('every counter the rules and the dashboard read with rate() or increase() is at 0 for each known label value from start-up', async () => {
    const fresh = (await httpCall(server.url, 'GET', '/metrics')).body as string;
    const names = reads();
    // The parser found what is there to find (a parser that found nothing would make this test pass).
    expect(names).toEqual(expect.arrayContaining(['atoll_leaked_resources_total', 'atoll_cross_request_contamination_total', 'atoll_cleanup_duration_seconds_bucket', 'atoll_runs_finished_total', 'process_cpu_seconds_total']));
    expect(bornAtZeroProblems(fresh, names)).toEqual([]);
    // Counters nothing reads yet too: every atoll_ counter has its series from start-up (a labelled one missing
    // from KNOWN_LABELS would have none), so a rule or a panel added later sees its first event.
    const counters = [...metricFamilies(fresh)].filter(([name, type]) => name.startsWith('atoll_') && type === 'counter').map(([name]) => name);
    expect(counters.length).toBeGreaterThan(20);
    expect(bornAtZeroProblems(fresh, counters)).toEqual([]);
    // Each check fails where it should: a kind missing, a counter born at 1, a gauge read as a counter.
    const noTimer = fresh.replace(/^atoll_leaked_resources_total\{kind="timer".*\n/m, '');
    expect(bornAtZeroProblems(noTimer, ['atoll_leaked_resources_total'])).toEqual([expect.stringContaining('{"kind":"timer"}: no series')]);
    const atOne = fresh.replace(/^(atoll_cross_request_contamination_total\{.*\}) 0$/m, '$1 1');
    expect(bornAtZeroProblems(atOne, ['atoll_cross_request_contamination_total'])).toEqual([expect.stringContaining('1 at start-up')]);
    expect(bornAtZeroProblems(fresh, ['atoll_runs_queued'])).toEqual([expect.stringContaining('exported as gauge')]);
  });

  test('a real Prometheus with the shipped rules fires each critical alert, and the leak alert, on the first occurrence', async () => {
    // The rules file is fed unchanged: these alerts have no `for:`, so they fire at the first evaluation
    // that sees the increase.
    const watched = rules().filter((r) => r.labels.severity === 'critical' || r.alert === 'AtollLeaksDetected');
    expect(watched.map((r) => r.alert).sort()).toEqual(['AtollCrossRequestContamination', 'AtollIsolationScoreBelow100', 'AtollLeaksDetected']);
    for (const r of watched) expect([r.alert, r.for]).toEqual([r.alert, undefined]);

    prometheus = await startPrometheus({ targets: [`127.0.0.1:${server.port}`], ruleFiles: [RULES], intervalS: 1 });
    const p = prometheus;
    const firing = async (alert: string) => (await p.alerts()).some((a) => a.labels.alertname === alert && a.state === 'firing');
    // Every rule loaded; Prometheus has scraped the idle server twice and evaluated every rule since.
    const scrapedTwice = async () => Number((await p.query('sum_over_time(up{job="atoll"}[1m])'))[0]?.value[1] ?? 0) >= 2;
    // (Prometheus adds static targets some 5 s after it starts.) On failure, what the scrapes met and logged.
    const scraped = await eventually(scrapedTwice, 30_000, 200);
    expect({ scraped, targets: await p.targets(), logs: p.logs(), serverExit: server.proc.exitCode ?? server.proc.signalCode }).toMatchObject({ scraped: true });
    const since = Date.now();
    expect(await eventually(async () => (await p.rules()).every((r) => Date.parse(r.lastEvaluation) > since), 30_000, 200)).toBe(true);
    const loaded = await p.rules();
    expect(loaded.map((r) => [r.name, r.health, r.lastError ?? '']).sort()).toEqual(rules().map((r) => [r.alert, 'ok', '']).sort());
    // Nothing has happened yet: none of them is pending or firing.
    expect((await p.alerts()).map((a) => a.labels.alertname).filter((n) => watched.some((r) => r.alert === n))).toEqual([]);

    u = await UserClient.connect(server.url, 'alerted');
    // Contamination: late-contaminator leaves a global behind 2 s after its run, its own checks long over; the next
    // run on its worker finds the worker not clean (a violation, so the isolation score drops too).
    const attack = await u.start({ agent: 'late-contaminator', input: { text: 'x', ms: 2000 } });
    expect(terminal(await u.waitForRun(attack.run_id, 60_000)).payload.status).toBe('completed');
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const victim = await u.start({ agent: 'echo', input: 'after' });
    expect(terminal(await u.waitForRun(victim.run_id, 60_000)).payload.status).toBe('completed');
    expect((await u.http('GET', `/v1/runs/${victim.run_id}`)).body.isolation).toMatchObject({ contaminated: true });
    expect(await eventually(() => firing('AtollCrossRequestContamination'), 30_000, 200)).toBe(true);
    expect(await eventually(() => firing('AtollIsolationScoreBelow100'), 30_000, 200)).toBe(true);
    expect(Number((await p.query('sum(atoll_cross_request_contamination_total)'))[0].value[1])).toBe(1);

    // The first leak: one interval left running.
    const leak = await u.start({ agent: 'chaos', input: { mode: 'leak_timer', text: 'leak' } });
    expect(terminal(await u.waitForRun(leak.run_id, 60_000)).payload.status).toBe('completed');
    expect(await eventually(() => firing('AtollLeaksDetected'), 30_000, 200)).toBe(true);
    expect(Number((await p.query('sum(atoll_leaked_resources_total)'))[0].value[1])).toBe(1);
  }, 180_000);
});
