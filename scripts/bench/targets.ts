/** Issue 16's targets, each checked against its figure in one bench report (pure; a missing figure is neither met nor missed). */
import type { LooseBenchReport } from './report-types.js';

export interface TargetRow {
  target: string;
  figure: number | null;
  unit: 'ratio' | 'ms' | 'MiB';
  op: '>=' | '<' | '<=';
  bound: number;
  /** null: the report has no figure for it (a phase that did not run, or an older report). */
  met: boolean | null;
}

const MIB = 2 ** 20;
const label = (kind: string | null | undefined) => (kind === 'postgresql' ? 'PostgreSQL' : 'SQLite');
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

function row(target: string, figure: number | null, unit: TargetRow['unit'], op: TargetRow['op'], bound: number): TargetRow {
  const met = figure === null ? null : op === '>=' ? figure >= bound : op === '<' ? figure < bound : figure <= bound;
  return { target, figure, unit, op, bound, met };
}

export function issueTargets(r: LooseBenchReport): TargetRow[] {
  const t = r.throughput;
  const dbs = r.settings?.databases ?? ['sqlite'];
  const inProcess = num(t?.in_process?.runs_per_s);
  const over = (v: number | null) => (v === null || inProcess === null || inProcess === 0 ? null : Math.round((v / inProcess) * 1000) / 1000);
  // The plain keys are the first database's rows; *_postgresql the second's (--database both).
  const perDb = dbs.map((kind, i) => ({ name: label(kind), atoll: i === 0 ? t?.atoll : t?.atoll_postgresql, paced: i === 0 ? r.half_peak?.atoll : r.half_peak?.atoll_postgresql }));
  const mib = (b: unknown) => (num(b) === null ? null : Math.round((num(b)! / MIB) * 10) / 10);
  return [
    ...perDb.map((d) => row(`Atoll / in-process runs/s on ${d.name}`, over(num(d.atoll?.runs_per_s)), 'ratio', '>=', 0.5)),
    ...perDb.map((d) => row(`time to first event p99 at half of peak on ${d.name}`, num(d.paced?.first_event_ms?.p99), 'ms', '<', 10)),
    row('next run served after a cell SIGKILL', num(r.recovery?.first_run_after_death_ms), 'ms', '<', 100),
    row('replacement cell ready after a SIGKILL', num(r.recovery?.replacement_ready_ms), 'ms', '<', 500),
    row(`healthy p99 with ${Math.round((r.half_peak?.chaos?.share ?? 0.2) * 100)}% chaos / without, at ${r.half_peak?.chaos?.tried_rates && r.half_peak.chaos.tried_rates.length > 1 ? 'a load the machine carries' : 'half of peak'}`, num(r.half_peak?.chaos?.healthy_p99_ratio), 'ratio', '<=', 1.5),
    row('idle worker (PSS, else RSS)', mib(r.memory?.atoll_idle_worker?.per_worker_bytes), 'MiB', '<', 12),
    row('front + 2 idle cells (RSS, defaults)', mib(r.memory?.atoll_at_rest?.rss_bytes), 'MiB', '<', 200),
    row('start-up: built tree to listening (issue 15)', num(r.startup?.listening_ms), 'ms', '<', 3000),
  ];
}

export function renderTargets(rows: readonly TargetRow[]): string[] {
  const fig = (v: number | null, unit: TargetRow['unit']) => (v === null ? '–' : unit === 'ratio' ? `${v.toFixed(v >= 10 ? 1 : 3)}` : `${v >= 100 ? Math.round(v) : v.toFixed(1)} ${unit}`);
  const op = { '>=': '≥', '<': '<', '<=': '≤' };
  return [
    'Targets (issues 15 and 16):',
    '',
    '| target | figure | bound | |',
    '|---|---:|---:|---|',
    ...rows.map((t) => `| ${t.target} | ${fig(t.figure, t.unit)} | ${op[t.op]} ${t.unit === 'ratio' ? t.bound : `${t.bound} ${t.unit}`} | ${t.met === null ? 'not measured' : t.met ? 'met' : 'missed'} |`),
  ];
}
