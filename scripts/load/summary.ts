/** The human summary printed at the end (the JSON report holds everything). */
import type { LoadReport, PhaseReport, RunCounts } from './report.js';
import type { Percentiles } from './stats.js';

const ms = (p: Percentiles) => (p.count === 0 ? 'n/a' : `p50 ${p.p50} / p95 ${p.p95} / p99 ${p.p99} / max ${p.max} ms (n=${p.count})`);
const mb = (b: number | null | undefined) => (b == null ? 'n/a' : `${(b / 2 ** 20).toFixed(1)} MiB`);
const lagMs = (s: number | null | undefined) => (s == null ? 'n/a' : `${(s * 1000).toFixed(1)} ms`);
const codes = (rec: Record<string, number>) => Object.entries(rec).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ') || 'none';

function counts(c: RunCounts): string {
  return `attempted ${c.attempted}, accepted ${c.accepted}, completed ${c.completed}, failed ${c.failed_total} (${codes(c.failed_by_code)}), unfinished ${c.unfinished}, refused ${c.refused_total} (${codes(c.refused)}), ack errors ${c.ack_errors}`;
}

function phase(p: PhaseReport): string[] {
  const modes = Object.entries(p.chaos.by_mode).map(([m, v]) => `${m} ${v.as_expected ?? '?'}/${v.runs}`).join(', ');
  return [
    `phase ${p.name} (chaos ${p.chaos_share}): ${p.duration_s}s`,
    `  runs        ${counts(p.runs)}`,
    ...(p.chaos.attempted ? [`  chaos       ${p.chaos.accepted} runs, as expected per mode: ${modes}; unexpected ${p.chaos.unexpected}`] : []),
    `  ack         ${ms(p.latency_ms.ack)}`,
    `  first event ${ms(p.latency_ms.first_event)}`,
    `  terminal    ${ms(p.latency_ms.terminal)}`,
    `  healthy     ${ms(p.healthy_terminal_latency_ms)}`,
    `  throughput  ${p.throughput.runs_per_s} runs/s, ${p.throughput.events_per_s} events/s (${p.throughput.events_received} events)`,
  ];
}

export function formatSummary(r: LoadReport, reportPath: string): string {
  const c = r.containment;
  const i = r.isolation;
  const s = r.server;
  const lines = [
    '',
    `Atoll load against ${r.target}: ${r.duration_s}s`,
    ...r.phases.flatMap(phase),
    `containment: ${c.healthy_not_completed} of ${c.healthy_runs} healthy runs did not complete correctly (target 0)` +
      (c.latency_ratio ? `; healthy latency with/without chaos p50 x${c.latency_ratio.p50}, p95 x${c.latency_ratio.p95}, p99 x${c.latency_ratio.p99}` : ''),
    `isolation: ${i.violations} faults (target 0): foreign events ${i.foreign_events}, out of order ${i.out_of_order_runs}, duplicated ${i.duplicated_runs}, missing ${i.missing_runs}, terminal ${i.terminal_faults}, log mismatch ${i.log_mismatch_runs}; ${i.runs_checked} runs checked, ${i.runs_checked_against_log} against the log`,
    s.available
      ? `server: front rss ${mb(s.before?.front_rss_bytes)} -> max ${mb(s.during?.max.front_rss_bytes)} -> ${mb(s.after?.front_rss_bytes)}; cells rss ${mb(s.before?.cells_rss_bytes)} -> max ${mb(s.during?.max.cells_rss_bytes)} -> ${mb(s.after?.cells_rss_bytes)}; event-loop lag p99 ${lagMs(s.before?.event_loop_lag_p99_s)} -> max ${lagMs(s.during?.max.event_loop_lag_p99_s)} -> ${lagMs(s.after?.event_loop_lag_p99_s)}; /metrics answered in ${s.during?.mean.scrape_ms ?? 'n/a'} ms mean, ${s.during?.max.scrape_ms ?? 'n/a'} ms max under load; cell deaths +${s.deltas.cell_deaths ?? 'n/a'}`
      : `server: /metrics unavailable (${s.error})`,
    `verdict: ${r.verdict.ok ? 'OK' : 'NOT OK'}${r.verdict.notes.length ? ` (${r.verdict.notes.join('; ')})` : ''}`,
    `report: ${reportPath}`,
  ];
  return lines.join('\n') + '\n';
}
