/**
 * `npm run bench -- --compare <earlier report.json>`: every figure of two bench reports side by side, with
 * after / before and after − before. Pure functions over the two parsed reports; a figure that one report lacks
 * (an older bench wrote it, or a phase it did not run) shows as "–" on that side; a figure neither has is left out.
 */
import type { LooseBenchReport } from './report-types.js';

export interface ComparisonRow {
  figure: string;
  unit: 'runs/s' | 'ms' | 'MiB' | 'ratio';
  before: number | null;
  after: number | null;
  /** after / before (null when either is missing or before is 0) and after − before. */
  ratio: number | null;
  delta: number | null;
}

type Pick = (r: LooseBenchReport) => unknown;
interface Figure {
  figure: string;
  unit: ComparisonRow['unit'];
  pick: Pick;
}

const MIB = 2 ** 20;
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const round = (v: number, digits: number) => Number(v.toFixed(digits));
const bytes = (pick: Pick): Pick => (r) => (num(pick(r)) === null ? null : round(num(pick(r))! / MIB, 2));

/** Throughput rows in the order the table prints them; any other row either report has comes after them. */
const THROUGHPUT_ORDER = ['limit_piscina', 'atoll', 'atoll_postgresql', 'atoll_max_runs_per_worker_1', 'atoll_max_runs_per_worker_1_postgresql', 'atoll_thread_reuse_any', 'atoll_thread_reuse_any_postgresql', 'in_process', 'process_per_run'];

function throughputFigures(before: LooseBenchReport, after: LooseBenchReport): Figure[] {
  const keys = new Set([...Object.keys(before.throughput ?? {}), ...Object.keys(after.throughput ?? {})]);
  const ordered = [...THROUGHPUT_ORDER.filter((k) => keys.has(k)), ...[...keys].filter((k) => !THROUGHPUT_ORDER.includes(k)).sort()];
  const row = (r: LooseBenchReport, k: string) => (r.throughput as Record<string, Record<string, unknown> | null | undefined> | null | undefined)?.[k];
  return ordered.flatMap((k) => [
    { figure: `${k} runs/s`, unit: 'runs/s' as const, pick: (r: LooseBenchReport) => row(r, k)?.runs_per_s },
    ...(['p50', 'p95', 'p99'] as const).map((p) => ({ figure: `${k} latency ${p}`, unit: 'ms' as const, pick: (r: LooseBenchReport) => row(r, k)?.[`latency_${p}_ms`] })),
  ]);
}

const RATIOS: Figure[] = [
  ...(['atoll_over_limit', 'atoll_over_in_process', 'atoll_over_process_per_run', 'max_runs_per_worker_1_over_default', 'thread_reuse_any_over_default'] as const).map((k) => ({
    figure: `ratio ${k}`, unit: 'ratio' as const, pick: (r: LooseBenchReport) => r.ratios?.[k],
  })),
  ...(['atoll', 'thread_reuse_any', 'max_runs_per_worker_1'] as const).map((k) => ({
    figure: `ratio postgresql_over_sqlite ${k}`, unit: 'ratio' as const, pick: (r: LooseBenchReport) => r.ratios?.postgresql_over_sqlite?.[k],
  })),
];

const MEMORY: Figure[] = [
  ...(['atoll', 'process_per_run', 'in_process'] as const).flatMap((d) => [
    { figure: `memory ${d} per in-flight run`, unit: 'MiB' as const, pick: bytes((r) => r.memory?.[d]?.per_run_bytes) },
    { figure: `memory ${d} per in-flight run (RSS)`, unit: 'MiB' as const, pick: bytes((r) => r.memory?.[d]?.per_run_rss_bytes) },
  ]),
  { figure: 'memory idle worker', unit: 'MiB', pick: bytes((r) => r.memory?.atoll_idle_worker?.per_worker_bytes) },
  { figure: 'memory idle worker (RSS)', unit: 'MiB', pick: bytes((r) => r.memory?.atoll_idle_worker?.per_worker_rss_bytes) },
  { figure: 'memory front + cells at rest, defaults', unit: 'MiB', pick: bytes((r) => r.memory?.atoll_at_rest?.bytes) },
  { figure: 'memory front + cells at rest, defaults (RSS)', unit: 'MiB', pick: bytes((r) => r.memory?.atoll_at_rest?.rss_bytes) },
];

const RECOVERY: Figure[] = (['first_run_after_death_ms', 'replacement_ready_ms', 'served_on_replacement_ms', 'server_restart_ms'] as const).map((k) => ({
  figure: `recovery ${k.replace(/_ms$/, '')}`, unit: 'ms', pick: (r: LooseBenchReport) => r.recovery?.[k],
}));

const STARTUP: Figure[] = [{ figure: 'start-up to listening', unit: 'ms', pick: (r) => r.startup?.listening_ms }];

type PhasePick = (r: LooseBenchReport) => NonNullable<LooseBenchReport['half_peak']>['atoll'] | undefined;
const phaseFigures = (name: string, phase: PhasePick): Figure[] => [
  { figure: `${name} runs/s scheduled`, unit: 'runs/s', pick: (r) => phase(r)?.rate_per_s },
  { figure: `${name} first event p50`, unit: 'ms', pick: (r) => phase(r)?.first_event_ms?.p50 },
  { figure: `${name} first event p99`, unit: 'ms', pick: (r) => phase(r)?.first_event_ms?.p99 },
  { figure: `${name} terminal p50`, unit: 'ms', pick: (r) => phase(r)?.terminal_ms?.p50 },
  { figure: `${name} terminal p99`, unit: 'ms', pick: (r) => phase(r)?.terminal_ms?.p99 },
];

const HALF_PEAK: Figure[] = [
  ...phaseFigures('half peak atoll', (r) => r.half_peak?.atoll),
  ...phaseFigures('half peak atoll_postgresql', (r) => r.half_peak?.atoll_postgresql),
  ...phaseFigures('half peak without chaos', (r) => r.half_peak?.chaos?.without),
  ...phaseFigures('half peak with chaos', (r) => r.half_peak?.chaos?.with),
  { figure: 'half peak chaos healthy p50 ratio', unit: 'ratio', pick: (r) => r.half_peak?.chaos?.healthy_p50_ratio },
  { figure: 'half peak chaos healthy p99 ratio', unit: 'ratio', pick: (r) => r.half_peak?.chaos?.healthy_p99_ratio },
];

export function compareReports(before: LooseBenchReport, after: LooseBenchReport): ComparisonRow[] {
  const figures = [...throughputFigures(before, after), ...RATIOS, ...MEMORY, ...RECOVERY, ...STARTUP, ...HALF_PEAK];
  return figures.flatMap(({ figure, unit, pick }) => {
    const b = num(pick(before));
    const a = num(pick(after));
    if (a === null && b === null) return [];
    return [{ figure, unit, before: b, after: a, ratio: a === null || b === null || b === 0 ? null : round(a / b, 3), delta: a === null || b === null ? null : Number((a - b).toPrecision(6)) }];
  });
}

/** Three significant digits below 1 (ratios such as 0.018 must not print as 0), two decimals up to 100, whole above. */
const show = (v: number | null) => (v === null ? '–' : Math.abs(v) >= 100 ? String(Math.round(v)) : Math.abs(v) >= 1 ? String(round(v, 2)) : String(Number(v.toPrecision(3))));

export function renderComparison(rows: readonly ComparisonRow[], names: { before: string; after: string }): string {
  return [
    `Comparison: before = ${names.before}, after = ${names.after}.`,
    '',
    '| figure | unit | before | after | after / before | after − before |',
    '|---|---|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.figure} | ${r.unit} | ${show(r.before)} | ${show(r.after)} | ${r.ratio === null ? '–' : `${r.ratio.toFixed(3)}×`} | ${r.delta === null ? '–' : `${r.delta > 0 ? '+' : ''}${show(r.delta)}`} |`),
    '',
  ].join('\n');
}
