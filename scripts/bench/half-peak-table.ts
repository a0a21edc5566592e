/** The markdown of the half-of-peak phases (half-peak.ts), printed under the bench's main table. */
import type { PacedPhase } from './paced.js';
import type { BenchReport } from './report-types.js';

const ms = (v: number | null | undefined) => (v == null ? 'n/a' : v >= 100 ? Math.round(v).toString() : v.toFixed(2));

export function renderHalfPeak(r: BenchReport): string[] {
  const h = r.half_peak;
  const [first, second] = r.settings.databases.map((k) => (k === 'sqlite' ? 'SQLite' : 'PostgreSQL'));
  const row = (name: string, p: PacedPhase | null | undefined) =>
    p
      ? `| ${name} | ${ms(p.rate_per_s)} | ${p.healthy_runs} | ${ms(p.first_event_ms.p50)} | ${ms(p.first_event_ms.p99)} | ${ms(p.terminal_ms.p50)} | ${ms(p.terminal_ms.p99)} | ${p.healthy_not_completed} |`
      : `| ${name} | – | – | – | – | – | – | – |`;
  const c = h.chaos;
  const env = c ? Object.entries(c.server_env).map(([k, v]) => `${k}=${v}`).join(' ') : '';
  return [
    `Half of peak: runs sent on a fixed schedule (open loop) at ${h.share_of_peak} × the runs/s of the same design's row above, dealt round robin over ` +
      `${r.settings.clients} socket.io clients (the users of that row), for ${r.settings.paced_s} s; latency from the client's send to the run's first event on its socket, and to its terminal event (healthy runs).`,
    '',
    '| Atoll at half of peak | runs/s scheduled | healthy runs | first event p50 ms | first event p99 ms | terminal p50 ms | terminal p99 ms | healthy runs not completed |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    row(`defaults on ${first}`, h.atoll),
    ...(second ? [row(`defaults on ${second}`, h.atoll_postgresql)] : []),
    row(`on ${first}, \`${env || 'chaos server'}\`: healthy runs only`, c?.without),
    row(`the same with ${c ? Math.round(c.share * 100) : 20}% \`chaos\` runs (${c ? c.modes.join(', ') : 'not run'}): its healthy runs`, c?.with),
    '',
    ...(c && c.tried_rates && c.tried_rates.length > 1
      ? [`The chaos comparison ran at ${ms(c.rate_per_s)} runs/s: at ${c.tried_rates.slice(0, -1).map(ms).join(', then ')} runs/s the machine could not carry the chaos share (a run left without its terminal event, or healthy p99 past 2 s: the backlog grew), so the rate was halved.`, '']
      : []),
    `Healthy runs with chaos / without, same schedule, same server: p99 ${c?.healthy_p99_ratio ?? 'n/a'}×, p50 ${c?.healthy_p50_ratio ?? 'n/a'}×` +
      (c ? ` (chaos runs by mode and outcome: ${Object.entries(c.with.chaos_outcomes).map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}).` : '.'),
  ];
}
