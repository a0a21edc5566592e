/**
 * `npm run soak`: one server lifetime, many runs with a share of every kind of chaos, and the question the
 * containment issue asks: afterwards, is the memory of the front and of each cell back within 10% of its
 * level after warm-up, and are the cells and workers whole? Starts its own server; drives it with the load
 * generator (`dist/scripts/load.js`) as a separate process; prints a summary and writes a JSON report.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { intFlag, numberFlag, parseFlags, stringFlag, switchFlag, UsageError } from './load/argv.js';
import { metricValue } from './load/prom.js';
import { sleep } from './load/stats.js';
import { ATOLL_ENTRY, BENCH_AGENTS_DIR, ROOT } from './bench/paths.js';
import { startServer } from './bench/spawn.js';

const CELLS = 2;
const WORKERS_PER_CELL = 2;
/** WARM_SPARE_THREADS' default: idle, warm threads per cell beyond its capacity. */
const WARM_SPARES = 1;
const TOLERANCE = 0.1;

interface MemorySample {
  front_rss_bytes: number;
  front_heap_bytes: number;
  /** By cell slot (cell1, cell2): a slot keeps its name across restarts. */
  cells_rss_bytes: Record<string, number>;
  cells_alive: number;
  threads_alive: number;
}

/** A series' labels when it is the front's own: none, or any that do not include `cell`. */
const FRONT_LABELS = '(?:\\{(?![^}]*\\bcell=)[^}]*\\})?';

function sample(text: string): MemorySample {
  const cells: Record<string, number> = {};
  for (const line of text.split('\n')) {
    // Label order is prom-client's business: find each label wherever it stands.
    const m = /^atoll_cell_memory_bytes\{(?=[^}]*\bkind="rss")[^}]*\bcell="(cell\d+)-g\d+"[^}]*\} (\S+)/.exec(line);
    if (m) cells[m[1]] = Number(m[2]);
  }
  return {
    // The front's own series carry no cell label (cells' default metrics are labelled by cell; all carry node).
    front_rss_bytes: Number(new RegExp(`^process_resident_memory_bytes${FRONT_LABELS} (\\S+)`, 'm').exec(text)?.[1] ?? NaN),
    front_heap_bytes: Number(new RegExp(`^nodejs_heap_size_used_bytes${FRONT_LABELS} (\\S+)`, 'm').exec(text)?.[1] ?? NaN),
    cells_rss_bytes: cells,
    cells_alive: metricValue(text, 'atoll_cells_alive') ?? 0,
    threads_alive: metricValue(text, 'atoll_threads_alive') ?? 0,
  };
}

async function scrape(url: string): Promise<string> {
  // The soak's server runs with --expose-gc: measure what is retained, not garbage waiting for a collection.
  return (await fetch(`${url}/metrics?gc=1`)).text();
}

/** Waits until no run is active or queued and the pool is whole, then lets memory settle. */
async function quiesce(url: string, timeoutMs: number, settleMs: number): Promise<MemorySample> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await scrape(url);
    const idle = (metricValue(text, 'atoll_runs_active') ?? 1) === 0 && (metricValue(text, 'atoll_runs_queued') ?? 1) === 0;
    // Whole and back to its base size: burst workers and quarantine cells retire after 30 s idle.
    const base = (metricValue(text, 'atoll_threads_alive') ?? 0) === CELLS * (WORKERS_PER_CELL + WARM_SPARES) && (metricValue(text, 'atoll_quarantine_cells_alive') ?? 0) === 0;
    if ((idle && base && (metricValue(text, 'atoll_cells_alive') ?? 0) === CELLS) || Date.now() > deadline) break;
    await sleep(250);
  }
  await sleep(settleMs);
  return sample(await scrape(url));
}

function runLoad(url: string, args: string[], out: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'dist/scripts/load.js'), '--url', url, '--agent', 'steps', '--no-baseline', '--quiet', '--jwt-secret', SECRET, '--out', out, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
    child.once('exit', (code) => {
      if (!fs.existsSync(out)) return reject(new Error(`the load generator exited ${code} without a report`));
      resolve(JSON.parse(fs.readFileSync(out, 'utf8')));
    });
  });
}

const SECRET = 'bench-secret-bench-secret-bench-secret';

async function main(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, { runs: 'value', users: 'value', chaos: 'value', warmup: 'value', out: 'value', help: 'switch' });
  if (switchFlag(flags, 'help')) {
    process.stdout.write(`npm run soak -- [--runs N (2000)] [--users N (20)] [--chaos SHARE (0.2)] [--warmup N (200)] [--out FILE]\n`);
    return 0;
  }
  const runs = intFlag(flags, 'runs', 2000, 10, 1_000_000);
  const users = intFlag(flags, 'users', 20, 1, 1000);
  const chaos = numberFlag(flags, 'chaos', 0.2, 0, 1);
  const warmup = intFlag(flags, 'warmup', 500, 10, 1_000_000);
  const out = path.resolve(stringFlag(flags, 'out', 'soak-report.json'));
  const scratch = fs.mkdtempSync(path.join(fs.realpathSync(require('node:os').tmpdir()), 'atoll-soak-'));

  const server = await startServer(ATOLL_ENTRY, {
    AGENTS_DIR: BENCH_AGENTS_DIR,
    ENABLE_CHAOS_AGENTS: '1',
    CELLS: String(CELLS),
    THREADS_PER_CELL: String(WORKERS_PER_CELL),
    RUN_TIMEOUT_MS: '2000',
    RUN_MEMORY_MB: '64',
    CELL_MEMORY_MB: '800',
    USER_MAX_CONCURRENT_RUNS: '100',
    MAX_QUEUED_RUNS: '100000',
    USER_MAX_QUEUED_RUNS: '100000',
    RATE_LIMIT_USER_PER_SEC: '100000',
    RATE_LIMIT_USER_BURST: '100000',
    RATE_LIMIT_IP_PER_SEC: '100000',
    RATE_LIMIT_IP_BURST: '100000',
    MAX_CONNECTIONS_PER_IP: '10000',
    AUTH_JWT_SECRET: SECRET,
    NODE_OPTIONS: '--expose-gc',
    // Idle cells that grew more than 10% over their warm baseline are replaced while idle (the default is 1.3).
    CELL_RECYCLE_RSS_RATIO: '1.1',
  });
  const started = Date.now();
  try {
    process.stderr.write(`soak: warm-up (${warmup} runs)\n`);
    await runLoad(server.url, ['--users', String(Math.min(users, warmup)), '--runs', String(Math.ceil(warmup / Math.min(users, warmup)))], path.join(scratch, 'warmup.json'));
    const afterWarmup = await quiesce(server.url, 90_000, 5000);
    process.stderr.write(`soak: ${runs} runs, ${Math.round(chaos * 100)}% chaos of every kind\n`);
    const perUser = Math.ceil(runs / users);
    const load = (await runLoad(
      server.url,
      ['--users', String(users), '--runs', String(perUser), '--chaos', String(chaos), '--chaos-modes', 'all', '--run-timeout', '60', '--max-time', '1800'],
      path.join(scratch, 'soak.json'),
    )) as { totals?: unknown; containment?: { healthy_not_completed: number }; isolation?: unknown; verdict?: { ok: boolean } };
    // Long enough for an idle cell over its baseline to be replaced (5 s idle, checked every 2.5 s).
    const afterSoak = await quiesce(server.url, 90_000, 12_000);
    const final = await scrape(server.url);

    const within = (a: number, b: number) => b <= a * (1 + TOLERANCE);
    const cellChecks = Object.fromEntries(
      Object.entries(afterSoak.cells_rss_bytes).map(([slot, bytes]) => [slot, { warmup: afterWarmup.cells_rss_bytes[slot] ?? null, after: bytes, ok: within(afterWarmup.cells_rss_bytes[slot] ?? bytes, bytes) }]),
    );
    const report = {
      runs: runs,
      users,
      chaos_share: chaos,
      seconds: Math.round((Date.now() - started) / 1000),
      load,
      memory: {
        after_warmup: afterWarmup,
        after_soak: afterSoak,
        front_rss_ok: within(afterWarmup.front_rss_bytes, afterSoak.front_rss_bytes),
        front_heap_ok: within(afterWarmup.front_heap_bytes, afterSoak.front_heap_bytes),
        cells: cellChecks,
      },
      pool_whole: afterSoak.cells_alive === CELLS && afterSoak.threads_alive >= CELLS * WORKERS_PER_CELL,
      cell_deaths: metricValue(final, 'atoll_cell_deaths_total') ?? 0,
      run_restarts: metricValue(final, 'atoll_run_restarts_total') ?? 0,
      collateral_runs: metricValue(final, 'atoll_collateral_runs_total') ?? 0,
      worker_recycles: metricValue(final, 'atoll_worker_recycles_total') ?? 0,
      cell_restart_seconds_avg: (metricValue(final, 'atoll_cell_restart_seconds_sum') ?? 0) / Math.max(1, metricValue(final, 'atoll_cell_restart_seconds_count') ?? 1),
    };
    const ok = report.memory.front_rss_ok && Object.values(cellChecks).every((c) => c.ok) && report.pool_whole && (load.containment?.healthy_not_completed ?? 1) === 0;
    fs.writeFileSync(out, JSON.stringify({ ...report, ok }, null, 2) + '\n');
    const mb = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;
    process.stdout.write(
      [
        `soak: ${runs} runs (${Math.round(chaos * 100)}% chaos) in ${report.seconds} s; report ${out}`,
        `  healthy runs not completed correctly: ${load.containment?.healthy_not_completed ?? '?'}; collateral runs: ${report.collateral_runs}`,
        `  cell deaths: ${report.cell_deaths}, bystander restarts: ${report.run_restarts}, worker recycles: ${report.worker_recycles}, mean cell restart ${report.cell_restart_seconds_avg.toFixed(2)} s`,
        `  front RSS ${mb(afterWarmup.front_rss_bytes)} -> ${mb(afterSoak.front_rss_bytes)} (${report.memory.front_rss_ok ? 'ok' : 'OVER 10%'}), heap ${mb(afterWarmup.front_heap_bytes)} -> ${mb(afterSoak.front_heap_bytes)}`,
        ...Object.entries(cellChecks).map(([slot, c]) => `  ${slot} RSS ${c.warmup === null ? '?' : mb(c.warmup)} -> ${mb(c.after)} (${c.ok ? 'ok' : 'OVER 10%'})`),
        `  pool whole: ${report.pool_whole} (cells ${afterSoak.cells_alive}, workers ${afterSoak.threads_alive})`,
        `  verdict: ${ok ? 'ok' : 'NOT ok'}`,
        '',
      ].join('\n'),
    );
    return ok ? 0 : 1;
  } finally {
    await server.stop();
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`soak: ${err instanceof UsageError ? err.message : (err as Error).stack}\n`);
    process.exit(err instanceof UsageError ? 2 : 3);
  },
);
