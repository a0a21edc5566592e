/** The markdown the bench prints (and the README quotes). */
import { machineLine, type Machine } from './machine.js';
import { renderHalfPeak } from './half-peak-table.js';
import type { BenchReport } from './report-types.js';
import { renderTargets } from './targets.js';

const num = (v: number | null | undefined, digits = 1) => (v == null ? 'n/a' : v >= 100 ? Math.round(v).toString() : v.toFixed(digits));
const mib = (b: number | null | undefined) => (b == null ? 'n/a' : `${(b / 2 ** 20).toFixed(1)} MiB`);
const x = (v: number | null | undefined) => (v == null ? 'n/a' : `${v >= 10 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2)}×`);

export function renderMarkdown(r: BenchReport, machine: Machine): string {
  const t = r.throughput;
  const m = r.memory;
  const atoll = t.atoll.runs_per_s;
  const vsAtoll = (v: number | null) => (v === null || atoll === null || atoll === 0 ? null : v / atoll);
  const row = (name: string, v: { runs_per_s: number | null; latency_p50_ms: number | null; latency_p95_ms: number | null }, memory: number | null | undefined, memNote = '') =>
    `| ${name} | ${num(v.runs_per_s)} | ${num(v.latency_p50_ms, 2)} | ${num(v.latency_p95_ms, 2)} | ${memory === undefined ? '–' : mib(memory) + memNote} | ${x(vsAtoll(v.runs_per_s))} |`;
  const s = r.settings;
  const rec = r.recovery;
  const label = (kind: string) => (kind === 'sqlite' ? 'SQLite' : 'PostgreSQL');
  const [first, second] = s.databases.map(label);
  // Atoll's rows, on each database in turn: the default, then one worker per run, then threads shared by all users.
  const atollRows = (on: string, v: { atoll: typeof t.atoll; mrpw: typeof t.atoll_max_runs_per_worker_1; reuseAny: typeof t.atoll }, memory: number | null | undefined) => ({
    atoll: row(`**Atoll** end to end on ${on} (socket → persisted run → cell → thread → events → socket)`, v.atoll, memory),
    mrpw: row(`Atoll on ${on}, \`MAX_RUNS_PER_WORKER=1\`${v.mrpw.honoured === false ? ' (ignored by this server build)' : ''}`, v.mrpw, undefined),
    reuseAny: row(`Atoll on ${on}, \`THREAD_REUSE=any\` (threads shared by all users: lockdown and checks only, no wall between users)`, v.reuseAny, undefined),
  });
  const rows = [atollRows(first, { atoll: t.atoll, mrpw: t.atoll_max_runs_per_worker_1, reuseAny: t.atoll_thread_reuse_any }, m.atoll.per_run_bytes)];
  if (second && t.atoll_postgresql && t.atoll_max_runs_per_worker_1_postgresql && t.atoll_thread_reuse_any_postgresql) {
    rows.push(atollRows(second, { atoll: t.atoll_postgresql, mrpw: t.atoll_max_runs_per_worker_1_postgresql, reuseAny: t.atoll_thread_reuse_any_postgresql }, undefined));
  }
  const pg = r.ratios.postgresql_over_sqlite;
  return [
    `Machine: ${machineLine(machine)}.`,
    `Workload: \`scripts/bench-agents/steps.mjs\` (an \`agent_thinking\` and a \`partial_result\` event, then returns). Medians of ${s.reps} repetitions of ${s.runs} runs ` +
      `or ${s.round_s} s, whichever comes first (limit: ${s.limit_runs} tasks), ${s.clients} socket.io clients × ${s.inflight} runs in flight, ${s.slots} execution slots in every design ` +
      `(Atoll: 2 cells × 2 threads). Latency: client send → terminal event (limit: task submit → result).${r.quick ? ' **--quick smoke run: not meaningful figures.**' : ''}`,
    '',
    `| design | runs/s | p50 ms | p95 ms | memory per in-flight run | runs/s vs Atoll on ${first} |`,
    '|---|---:|---:|---:|---:|---:|',
    row('limit: raw Piscina dispatch (no server, no DB)', t.limit_piscina, undefined),
    ...rows.map((x) => x.atoll),
    ...rows.map((x) => x.mrpw),
    ...rows.map((x) => x.reuseAny),
    row('one shared in-process agent (no isolation, no DB)', t.in_process, m.in_process.per_run_bytes),
    row('one child process per run (no DB)', t.process_per_run, m.process_per_run.per_run_bytes),
    '',
    `Ratios (runs/s; Atoll on ${first}): Atoll / limit = ${num(r.ratios.atoll_over_limit, 3)}, Atoll / in-process = ${num(r.ratios.atoll_over_in_process, 3)}, ` +
      `Atoll / process-per-run = ${num(r.ratios.atoll_over_process_per_run, 2)}, \`MAX_RUNS_PER_WORKER=1\` / default = ${num(r.ratios.max_runs_per_worker_1_over_default, 3)}, ` +
      `\`THREAD_REUSE=any\` / default = ${num(r.ratios.thread_reuse_any_over_default, 3)}` +
      (pg ? `; PostgreSQL / SQLite = ${num(pg.atoll, 3)} (default), ${num(pg.max_runs_per_worker_1, 3)} (\`MAX_RUNS_PER_WORKER=1\`), ${num(pg.thread_reuse_any, 3)} (\`THREAD_REUSE=any\`)` : '') +
      '.',
    (s.postgresql ? `PostgreSQL: a fresh database per Atoll server on ${s.postgresql}. ` : '') +
    `Memory: growth of the ${m.source === 'pss' ? 'PSS (shared pages split between the processes that map them)' : 'RSS'} of all the design's processes per extra concurrent ` +
      `in-flight run, between ${m.levels[0]} and ${m.levels[1]} runs in flight (Atoll on ${first}: ${mib(m.atoll.levels[0].bytes)} → ${mib(m.atoll.levels[1].bytes)}, ` +
      `each Atoll slot being a worker thread with its own Prisma client; process per run: ${mib(m.process_per_run.levels[0].bytes)} → ${mib(m.process_per_run.levels[1].bytes)}). ` +
      `As plain RSS, which counts shared pages once per process: Atoll ${mib(m.atoll.per_run_rss_bytes)}, process per run ${mib(m.process_per_run.per_run_rss_bytes)}, in-process ${mib(m.in_process.per_run_rss_bytes)} per run.`,
    `Idle worker thread (Atoll at rest, defaults, every thread warm and having served runs): ` +
      `${mib(m.atoll_idle_worker.per_worker_bytes)} each (${m.source === 'pss' ? 'PSS' : 'RSS'}; ${mib(m.atoll_idle_worker.per_worker_rss_bytes)} as RSS), ` +
      `between ${m.atoll_idle_worker.threads[0]} and ${m.atoll_idle_worker.threads[1]} threads (${mib(m.atoll_idle_worker.bytes[0])} → ${mib(m.atoll_idle_worker.bytes[1])} for front and cells).`,
    `Recovery after \`SIGKILL\` of a cell (Atoll on ${first}, median of ${rec.reps}): the surviving cell served the next run after ${num(rec.first_run_after_death_ms)} ms; ` +
      `the replacement was ready after ${num(rec.replacement_ready_ms)} ms (server's own \`atoll_cell_restart_seconds\`: ${num(rec.server_restart_ms)} ms) ` +
      `and served its first run after ${num(rec.served_on_replacement_ms)} ms.`,
    `Start-up: \`node ${r.startup.entry}\` (what \`npm start\` runs) on the built tree, fresh SQLite, defaults: listening after ${num(r.startup.listening_ms)} ms ` +
      `(median of ${r.startup.samples_ms.length}; npm's own start-up not included).`,
    `Front + ${m.atoll_at_rest.cells} cells at rest with the defaults (${m.atoll_at_rest.workers} workers, each having served runs): ${mib(m.atoll_at_rest.rss_bytes)} RSS ` +
      `(${mib(m.atoll_at_rest.bytes)} ${m.source === 'pss' ? 'PSS' : 'RSS'}).`,
    '',
    ...renderHalfPeak(r),
    '',
    ...renderTargets(r.targets),
    '',
  ].join('\n');
}
