/** `npm run bench -- --compare`: every figure of two reports side by side (scripts/bench/compare.ts), and issue 16's targets (targets.ts). */
import { compareReports, renderComparison, type ComparisonRow } from '../../scripts/bench/compare';
import type { LooseBenchReport } from '../../scripts/bench/report-types';
import { issueTargets } from '../../scripts/bench/targets';

const MIB = 2 ** 20;
const variant = (rps: number, p50: number) => ({ runs_per_s: rps, latency_p50_ms: p50, latency_p95_ms: p50 * 2, latency_p99_ms: p50 * 3 });
const phase = (fe99: number, t99: number) => ({ rate_per_s: 100, first_event_ms: { p50: 2, p99: fe99 }, terminal_ms: { p50: 10, p99: t99 } });

/** As an older bench wrote it: no half_peak, no atoll_at_rest, no targets. */
const older: LooseBenchReport = {
  tool: 'atoll-bench',
  settings: { databases: ['sqlite'] },
  throughput: { atoll: variant(300, 20), in_process: variant(2400, 2) },
  ratios: { atoll_over_in_process: 0.125 },
  memory: { atoll_idle_worker: { per_worker_bytes: 17 * MIB } },
  recovery: { first_run_after_death_ms: 80, replacement_ready_ms: 700 },
};

const newer: LooseBenchReport = {
  tool: 'atoll-bench',
  settings: { databases: ['sqlite', 'postgresql'] },
  throughput: { atoll: variant(330, 18), atoll_postgresql: variant(220, 30), in_process: variant(2200, 2) },
  ratios: { atoll_over_in_process: 0.15 },
  memory: { atoll_idle_worker: { per_worker_bytes: 11 * MIB }, atoll_at_rest: { rss_bytes: 190 * MIB } },
  recovery: { first_run_after_death_ms: 60, replacement_ready_ms: 450 },
  half_peak: {
    share_of_peak: 0.5,
    atoll: phase(8, 30),
    atoll_postgresql: phase(12, 40),
    chaos: { share: 0.2, without: phase(5, 20), with: phase(9, 50), healthy_p50_ratio: 1, healthy_p99_ratio: 2.5 },
  },
};

const byFigure = (rows: ComparisonRow[]) => new Map(rows.map((r) => [r.figure, r]));

test('a figure in both reports: before, after, after / before and after − before', () => {
  const rows = byFigure(compareReports(older, newer));
  expect(rows.get('atoll runs/s')).toEqual({ figure: 'atoll runs/s', unit: 'runs/s', before: 300, after: 330, ratio: 1.1, delta: 30 });
  expect(rows.get('atoll latency p99')).toMatchObject({ before: 60, after: 54, ratio: 0.9, delta: -6 });
  expect(rows.get('ratio atoll_over_in_process')).toMatchObject({ before: 0.125, after: 0.15, ratio: 1.2, delta: 0.025 });
  expect(rows.get('recovery replacement_ready')).toMatchObject({ unit: 'ms', before: 700, after: 450, delta: -250 });
  // Bytes are compared in MiB.
  expect(rows.get('memory idle worker')).toMatchObject({ unit: 'MiB', before: 17, after: 11, delta: -6 });
});

test('a figure one report lacks has null on that side and no ratio; one that neither has is left out', () => {
  const rows = byFigure(compareReports(older, newer));
  expect(rows.get('atoll_postgresql runs/s')).toMatchObject({ before: null, after: 220, ratio: null, delta: null });
  expect(rows.get('half peak atoll first event p99')).toMatchObject({ before: null, after: 8 });
  expect(rows.get('half peak chaos healthy p99 ratio')).toMatchObject({ before: null, after: 2.5 });
  expect(rows.get('memory front + cells at rest, defaults (RSS)')).toMatchObject({ before: null, after: 190 });
  expect(rows.has('process_per_run runs/s')).toBe(false);
  expect(rows.has('recovery server_restart')).toBe(false);
  // The other way round (an old report as the current one) works the same.
  expect(byFigure(compareReports(newer, older)).get('atoll_postgresql runs/s')).toMatchObject({ before: 220, after: null });
  // Reports with nothing at all (a broken file's parse) compare to an empty table rather than throwing.
  expect(compareReports({}, {})).toEqual([]);
});

test('a zero before has no ratio but a delta', () => {
  const zero: LooseBenchReport = { throughput: { atoll: { runs_per_s: 0 } } };
  expect(byFigure(compareReports(zero, newer)).get('atoll runs/s')).toMatchObject({ before: 0, after: 330, ratio: null, delta: 330 });
});

test('the table: one line per figure, "–" where a report lacks it', () => {
  const rows = compareReports(older, newer);
  const md = renderComparison(rows, { before: 'old.json', after: 'new.json' });
  expect(md).toContain('before = old.json, after = new.json');
  const lines = md.split('\n').filter((l) => /^\| .* \|$/.test(l));
  expect(lines).toHaveLength(rows.length + 1);
  expect(lines).toContain('| atoll runs/s | runs/s | 300 | 330 | 1.100× | +30 |');
  expect(lines).toContain('| atoll_postgresql runs/s | runs/s | – | 220 | – | – |');
});

test('issue 16 targets: each figure against its bound, per database, not measured when missing', () => {
  const t = new Map(issueTargets(newer).map((r) => [r.target, r]));
  expect(t.get('Atoll / in-process runs/s on SQLite')).toMatchObject({ figure: 0.15, op: '>=', bound: 0.5, met: false });
  expect(t.get('Atoll / in-process runs/s on PostgreSQL')).toMatchObject({ figure: 0.1, met: false });
  expect(t.get('time to first event p99 at half of peak on SQLite')).toMatchObject({ figure: 8, bound: 10, met: true });
  expect(t.get('time to first event p99 at half of peak on PostgreSQL')).toMatchObject({ figure: 12, met: false });
  expect(t.get('next run served after a cell SIGKILL')).toMatchObject({ figure: 60, met: true });
  expect(t.get('replacement cell ready after a SIGKILL')).toMatchObject({ figure: 450, met: true });
  expect(t.get('healthy p99 with 20% chaos / without, at half of peak')).toMatchObject({ figure: 2.5, op: '<=', bound: 1.5, met: false });
  expect(t.get('idle worker (PSS, else RSS)')).toMatchObject({ figure: 11, unit: 'MiB', met: true });
  expect(t.get('front + 2 idle cells (RSS, defaults)')).toMatchObject({ figure: 190, met: true });
  // Bounds are strict where the issue says "<", inclusive where it says "≤".
  const atBound: LooseBenchReport = { ...newer, half_peak: { ...newer.half_peak, atoll: phase(10, 30), chaos: { healthy_p99_ratio: 1.5 } } };
  const b = new Map(issueTargets(atBound).map((r) => [r.target, r]));
  expect(b.get('time to first event p99 at half of peak on SQLite')!.met).toBe(false);
  expect(b.get('healthy p99 with 20% chaos / without, at half of peak')!.met).toBe(true);
  // An older report: what it lacks is neither met nor missed.
  const old = new Map(issueTargets(older).map((r) => [r.target, r]));
  expect(old.has('Atoll / in-process runs/s on PostgreSQL')).toBe(false);
  expect(old.get('time to first event p99 at half of peak on SQLite')).toMatchObject({ figure: null, met: null });
  expect(old.get('front + 2 idle cells (RSS, defaults)')).toMatchObject({ figure: null, met: null });
});

test('small figures keep three significant digits in the table (a ratio of 0.018 is not 0)', () => {
  const md = renderComparison(compareReports({ ratios: { atoll_over_limit: 0.0182 } }, { ratios: { atoll_over_limit: 0.0261 } }), { before: 'a', after: 'b' });
  expect(md).toContain('| ratio atoll_over_limit | ratio | 0.0182 | 0.0261 | 1.434× | +0.0079 |');
});
