/**
 * `npm run bench`: one command, one machine, the same trivial workload through every design: the raw
 * Piscina limit, Atoll end to end (default, THREAD_REUSE=any and MAX_RUNS_PER_WORKER=1) on SQLite, PostgreSQL or
 * both (--database), one shared in-process agent, one process per run; Atoll at half of its own peak, with and
 * without chaos runs (bench/half-peak.ts); then memory per in-flight run and at rest, and recovery after a cell's
 * death. Prints a markdown table with issue 16's targets (bench/targets.ts) and writes a JSON report; --compare
 * adds a before/after table against an earlier report (bench/compare.ts). With --cluster, several nodes instead
 * (scripts/bench/cluster-bench.ts). Composition root: everything it starts (servers, their databases, Redis key
 * prefixes), it stops and drops.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { UsageError } from './load/argv.js';
import { getJson } from './load/auth.js';
import { ratio, round } from './load/stats.js';
import { DatabaseUnusableError, postgresqlDatabase, sqliteDatabase, type BenchDatabase } from './bench/databases.js';
import { clusterBench } from './bench/cluster-bench.js';
import { describeMachine, type Machine } from './bench/machine.js';
import { idleMemory, memoryAtLevel, perRunBytes, perWorker, restingMemory, type MemoryLevel, type MemoryTarget } from './bench/memory.js';
import { CHAOS_SERVER_ENV, SHARE_OF_PEAK, chaosComparison, halfPeak, type PhaseSettings } from './bench/half-peak.js';
import type { PacedPhase } from './bench/paced.js';
import { compareReports, renderComparison } from './bench/compare.js';
import { issueTargets } from './bench/targets.js';
import { HELP, parseBenchOptions, type BenchOptions } from './bench/options.js';
import { startAtoll as startAtollOn } from './bench/atoll-server.js';
import { BASELINE_ENTRY, agentFile } from './bench/paths.js';
import { piscinaRound, withPiscina } from './bench/piscina-limit.js';
import { recoveryOnce, summarizeRecovery, type RecoverySample } from './bench/recovery.js';
import { measureStartup } from './bench/startup.js';
import { redisScratches, RedisUnusableError } from './bench/redis-scratch.js';
import type { BenchReport, LooseBenchReport, MemoryReport } from './bench/report-types.js';
import { maskPassword } from '../server/store/database-target.js';
import { startServer, type Spawned } from './bench/spawn.js';
import { renderMarkdown } from './bench/table.js';
import { clientPrefix, distinctWorkers, socketVariant, summarizeRounds, type VariantReport } from './bench/variants.js';
import type { BenchDatabaseKind } from './bench/databases.js';

/** Execution slots in every design: Atoll's default 2 cells × 2 workers. */
const CELLS = 2;
const THREADS_PER_CELL = 2;
const SLOTS = CELLS * THREADS_PER_CELL;
const WORKER_SAMPLE = 40;
/** After the last run of a paced phase is sent: the most it waits for those in flight. */
const PACED_DRAIN_MS = 30_000;

type Log = (msg: string) => void;

const rps = (v: { report: VariantReport } | undefined) => v?.report.runs_per_s ?? null;

/** An Atoll of `CELLS` cells on a fresh database of its own, dropped when it stops. */
const startAtoll = (db: BenchDatabase, workersPerCell: number, extra: Record<string, string> = {}) => startAtollOn(db, CELLS, workersPerCell, extra);
const startBaseline = (mode: 'in-process' | 'process-per-run', slots: number) => startServer(BASELINE_ENTRY, {}, ['--mode', mode, '--slots', String(slots)]);

async function using<T>(server: Promise<Spawned>, use: (s: Spawned) => Promise<T>): Promise<T> {
  const s = await server;
  try {
    return await use(s);
  } finally {
    await s.stop();
  }
}

async function limit(opts: BenchOptions): Promise<VariantReport> {
  return withPiscina(SLOTS, async (pool) => {
    // Far more tasks in flight than workers: the pool, not the submitter, must be the bottleneck.
    const inflight = SLOTS * 16;
    const warmStart = performance.now();
    if (opts.warmup > 0) await piscinaRound(pool, agentFile('steps'), opts.warmup * 10, inflight, opts.roundMs);
    const left = opts.warmupMs - (performance.now() - warmStart);
    if (left > 0) await piscinaRound(pool, agentFile('steps'), opts.limitRuns, inflight, left);
    const rounds = [];
    for (let r = 0; r < opts.reps; r++) rounds.push(await piscinaRound(pool, agentFile('steps'), opts.limitRuns, inflight, opts.roundMs));
    return summarizeRounds('limit: raw Piscina dispatch', rounds);
  });
}

async function memory(db: BenchDatabase, opts: BenchOptions, log: Log): Promise<MemoryReport> {
  const [low, high] = opts.memoryLevels;
  const atollTarget = (s: Spawned): MemoryTarget => ({ url: s.url, auth: 'dev-login', pids: async () => [s.pid, ...s.cellPids().values()], stop: s.stop });
  const baselineTarget = (s: Spawned): MemoryTarget => ({
    url: s.url,
    auth: 'none',
    pids: async () => (await getJson(s.url, '/pids', null, 5000)).body.pids as number[],
    stop: s.stop,
  });
  const measure = async (start: (level: number) => Promise<Spawned>, target: (s: Spawned) => MemoryTarget, name: string) => {
    const levels: MemoryLevel[] = [];
    for (const level of [low, high]) {
      log(`memory: ${name} with ${level} runs in flight`);
      levels.push(await using(start(level), (s) => memoryAtLevel(target(s), level, opts.holdMs, opts.reps)));
    }
    return { levels: levels as [MemoryLevel, MemoryLevel], per_run_bytes: perRunBytes(levels[0], levels[1]), per_run_rss_bytes: perRunBytes(levels[0], levels[1], 'rss_bytes') };
  };
  const atoll = await measure((level) => startAtoll(db, level / CELLS), atollTarget, `Atoll on ${db.label}`);
  const processPerRun = await measure((level) => startBaseline('process-per-run', level), baselineTarget, 'process per run');
  const inProcess = await measure((level) => startBaseline('in-process', level), baselineTarget, 'in-process');
  // Idle workers: the same memory levels, counted in workers (2 cells), measured at rest.
  const idle = [];
  for (const workers of [low, high]) {
    log(`memory: Atoll at rest with ${workers} warmed workers`);
    idle.push(await using(startAtoll(db, workers / CELLS), (s) => idleMemory(atollTarget(s), workers, opts.reps)));
  }
  const atollIdleWorker = perWorker([low, high], idle[0], idle[1]);
  // The defaults' shape: already measured when it is one of the levels (--quick's 2,4).
  const atDefaults = [low, high].indexOf(SLOTS);
  if (atDefaults < 0) log(`memory: Atoll at rest with its defaults (${CELLS} cells × ${THREADS_PER_CELL} workers)`);
  const atRest =
    atDefaults >= 0
      ? { cells: CELLS, workers: SLOTS, bytes: idle[atDefaults].bytes, rss_bytes: idle[atDefaults].rssBytes }
      : await using(startAtoll(db, THREADS_PER_CELL), (s) => restingMemory(atollTarget(s), CELLS, SLOTS, opts.reps));
  return { levels: [low, high], source: atoll.levels[0].source, atoll, process_per_run: processPerRun, in_process: inProcess, atoll_idle_worker: atollIdleWorker, atoll_at_rest: atRest };
}

async function main(argv: string[]): Promise<number> {
  let opts: BenchOptions;
  try {
    const parsed = parseBenchOptions(argv, new Date());
    if (parsed === 'help') {
      process.stdout.write(HELP);
      return 0;
    }
    opts = parsed;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`bench: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  let earlier: LooseBenchReport | null = null;
  if (opts.compare !== null) {
    // Read before anything runs: a report that cannot be compared is a usage problem, said at once.
    try {
      earlier = readReport(opts.compare);
      if (opts.current !== null) {
        process.stdout.write(renderComparison(compareReports(earlier, readReport(opts.current)), { before: opts.compare, after: opts.current }));
        return 0;
      }
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      process.stderr.write(`bench: ${err.message}\n`);
      return 2;
    }
  }
  const startedAt = new Date();
  const machine = describeMachine();
  const log: Log = (msg) => process.stderr.write(`bench: ${((Date.now() - startedAt.getTime()) / 1000).toFixed(1)}s ${msg}\n`);

  if (opts.cluster) return cluster(opts, machine, startedAt, log);
  const dbs = opts.databases.map((kind) => (kind === 'sqlite' ? sqliteDatabase() : postgresqlDatabase(opts.postgresqlUrl)));
  try {
    // Before anything is measured: a database the bench cannot create is a usage problem, said at once.
    for (const db of dbs) await (await db.scratch()).drop();
  } catch (err) {
    if (!(err instanceof DatabaseUnusableError)) throw err;
    process.stderr.write(`bench: ${err.message}\n`);
    return 3;
  }

  // First, while nothing else of the bench runs: start-up is what a busy machine slows most.
  log('start-up: npm start on the built tree');
  const startup = await measureStartup(opts.reps);
  log('limit: raw Piscina');
  const limitReport = await limit(opts);
  const recoverySamples: RecoverySample[] = [];
  // Each Atoll variant on every database in turn, so that each database's figures come from the same minutes.
  const atoll = new Map<BenchDatabaseKind, { report: VariantReport; workers: { runs: number; workers: number } }>();
  const halfPeaks = new Map<BenchDatabaseKind, PacedPhase | null>();
  const phase: PhaseSettings = { durationMs: opts.pacedMs, drainMs: PACED_DRAIN_MS, clients: opts.clients, warmup: opts.warmup };
  const halfOf = (v: VariantReport) => (v.runs_per_s === null || v.runs_per_s <= 0 ? null : v.runs_per_s * SHARE_OF_PEAK);
  for (const [i, db] of dbs.entries()) {
    log(`Atoll end to end on ${db.label}`);
    atoll.set(db.kind, await using(startAtoll(db, THREADS_PER_CELL), async (s) => {
      const label = `Atoll ${db.label}`;
      const v = await socketVariant(label, s.url, 'dev-login', opts);
      const workers = await distinctWorkers(s.url, v.last.run_refs, WORKER_SAMPLE);
      // Half of the peak just measured, on the same warm server and by the same users, before any cell death.
      const rate = halfOf(v.report);
      log(`half of peak on ${db.label}: ${rate?.toFixed(1) ?? 'no'} runs/s`);
      halfPeaks.set(db.kind, rate === null ? null : await halfPeak(s.url, clientPrefix(label), rate, phase));
      // This server has had no cell death yet, so it can serve as the first recovery repetition.
      if (i === 0) {
        log(`recovery 1/${opts.recoveryReps}`);
        recoverySamples.push(await recoveryOnce(s));
      }
      return { report: v.report, workers };
    }));
  }
  // The cost of the wall between users: the same server with workers shared by all users.
  const reuseAny = new Map<BenchDatabaseKind, VariantReport>();
  for (const db of dbs) {
    log(`Atoll with THREAD_REUSE=any on ${db.label}`);
    reuseAny.set(db.kind, await using(startAtoll(db, THREADS_PER_CELL, { THREAD_REUSE: 'any' }), async (s) => (await socketVariant(`Atoll THREAD_REUSE=any ${db.label}`, s.url, 'dev-login', opts)).report));
  }
  const mrpw = new Map<BenchDatabaseKind, { report: VariantReport; workers: { runs: number; workers: number } }>();
  for (const db of dbs) {
    log(`Atoll with MAX_RUNS_PER_WORKER=1 on ${db.label}`);
    mrpw.set(db.kind, await using(startAtoll(db, THREADS_PER_CELL, { MAX_RUNS_PER_WORKER: '1' }), async (s) => {
      const v = await socketVariant(`Atoll MAX_RUNS_PER_WORKER=1 ${db.label}`, s.url, 'dev-login', opts);
      return { report: v.report, workers: await distinctWorkers(s.url, v.last.run_refs, WORKER_SAMPLE) };
    }));
  }
  log('one shared in-process agent');
  const inProcess = await using(startBaseline('in-process', SLOTS), (s) => socketVariant('in-process', s.url, 'none', opts));
  log('one process per run');
  const processPerRun = await using(startBaseline('process-per-run', SLOTS), (s) => socketVariant('process per run', s.url, 'none', opts));
  const chaosRate = halfOf(atoll.get(dbs[0].kind)!.report);
  log(`half of peak with and without chaos on ${dbs[0].label}`);
  const chaos = chaosRate === null ? null : await using(startAtoll(dbs[0], THREADS_PER_CELL, CHAOS_SERVER_ENV), (s) => chaosComparison(s.url, chaosRate, phase, log));
  const mem = await memory(dbs[0], opts, log);
  for (let r = 1; r < opts.recoveryReps; r++) {
    log(`recovery ${r + 1}/${opts.recoveryReps} on ${dbs[0].label}`);
    recoverySamples.push(await using(startAtoll(dbs[0], THREADS_PER_CELL), recoveryOnce));
  }

  // More sampled runs than the default has workers, all on distinct workers: the server honoured it.
  const mrpwRow = (kind: BenchDatabaseKind) => {
    const m = mrpw.get(kind)!;
    const honoured = m.workers.runs > SLOTS ? m.workers.workers === m.workers.runs : null;
    return { ...m.report, distinct_workers: m.workers, default_distinct_workers: atoll.get(kind)!.workers, honoured };
  };
  const first = dbs[0].kind;
  // With --database both: PostgreSQL's rows beside SQLite's.
  const second = dbs.length > 1 ? dbs[1].kind : null;
  const finishedAt = new Date();
  machine.loadavg_at_end = round(os.loadavg()[0], 2);
  const report: BenchReport = {
    tool: 'atoll-bench',
    version: 1,
    quick: opts.quick,
    started_at: startedAt.toISOString(),
    finished_at: finishedAt.toISOString(),
    duration_s: round((finishedAt.getTime() - startedAt.getTime()) / 1000, 1)!,
    machine,
    settings: { databases: opts.databases, postgresql: opts.databases.includes('postgresql') ? maskPassword(opts.postgresqlUrl) : null, reps: opts.reps, runs: opts.runs, limit_runs: opts.limitRuns, round_s: opts.roundMs / 1000, warmup: opts.warmup, warmup_s: opts.warmupMs / 1000, clients: opts.clients, inflight: opts.inflight, slots: SLOTS, hold_ms: opts.holdMs, paced_s: opts.pacedMs / 1000 },
    throughput: {
      limit_piscina: limitReport,
      atoll: atoll.get(first)!.report,
      atoll_thread_reuse_any: reuseAny.get(first)!,
      atoll_max_runs_per_worker_1: mrpwRow(first),
      in_process: inProcess.report,
      process_per_run: processPerRun.report,
      ...(second && {
        atoll_postgresql: atoll.get(second)!.report,
        atoll_thread_reuse_any_postgresql: reuseAny.get(second)!,
        atoll_max_runs_per_worker_1_postgresql: mrpwRow(second),
      }),
    },
    ratios: {
      atoll_over_limit: ratio(rps(atoll.get(first)), limitReport.runs_per_s, 4),
      atoll_over_in_process: ratio(rps(atoll.get(first)), inProcess.report.runs_per_s, 4),
      atoll_over_process_per_run: ratio(rps(atoll.get(first)), processPerRun.report.runs_per_s, 4),
      max_runs_per_worker_1_over_default: ratio(rps(mrpw.get(first)), rps(atoll.get(first)), 4),
      thread_reuse_any_over_default: ratio(reuseAny.get(first)!.runs_per_s, rps(atoll.get(first)), 4),
      ...(second && {
        postgresql_over_sqlite: {
          atoll: ratio(rps(atoll.get(second)), rps(atoll.get(first)), 4),
          thread_reuse_any: ratio(reuseAny.get(second)!.runs_per_s, reuseAny.get(first)!.runs_per_s, 4),
          max_runs_per_worker_1: ratio(rps(mrpw.get(second)), rps(mrpw.get(first)), 4),
        },
      }),
    },
    memory: mem,
    recovery: summarizeRecovery(recoverySamples),
    startup,
    half_peak: {
      share_of_peak: SHARE_OF_PEAK,
      atoll: halfPeaks.get(first) ?? null,
      ...(second && { atoll_postgresql: halfPeaks.get(second) ?? null }),
      chaos,
    },
    targets: [],
    markdown: '',
  };
  report.targets = issueTargets(report);
  report.markdown = renderMarkdown(report, machine);
  writeReport(opts, report);
  if (earlier !== null) process.stdout.write(`\n${renderComparison(compareReports(earlier, report), { before: opts.compare!, after: opts.out })}`);
  return 0;
}

/** --cluster: several nodes on PostgreSQL and Redis (scripts/bench/cluster-bench.ts). */
async function cluster(opts: BenchOptions, machine: Machine, startedAt: Date, log: Log): Promise<number> {
  const db = postgresqlDatabase(opts.postgresqlUrl);
  const redis = redisScratches(opts.redisUrl);
  try {
    // Before anything is measured: a database or a Redis the bench cannot use is a usage problem, said at once.
    await (await db.scratch()).drop();
    await (await redis.scratch()).drop();
  } catch (err) {
    if (!(err instanceof DatabaseUnusableError) && !(err instanceof RedisUnusableError)) throw err;
    process.stderr.write(`bench: ${err.message}\n`);
    return 3;
  }
  writeReport(opts, await clusterBench(opts, { db, redis, machine, startedAt, log }));
  return 0;
}

/** A report of the default bench, as JSON; anything else is a UsageError naming the file. */
function readReport(file: string): LooseBenchReport {
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new UsageError(`cannot read ${file} as a JSON report: ${(err as Error).message}`);
  }
  const r = parsed as { tool?: unknown; mode?: unknown } | null;
  if (r?.tool !== 'atoll-bench' || r.mode === 'cluster') throw new UsageError(`${file} is not a report of npm run bench (without --cluster)`);
  return parsed as LooseBenchReport;
}

function writeReport(opts: BenchOptions, report: { markdown: string }): void {
  fs.mkdirSync(path.dirname(path.resolve(opts.out)), { recursive: true });
  fs.writeFileSync(opts.out, JSON.stringify(report, null, 2) + '\n');
  if (opts.markdown) fs.writeFileSync(opts.markdown, report.markdown);
  process.stdout.write(`\n${report.markdown}\nreport: ${opts.out}\n`);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`bench: ${String(err?.stack ?? err)}\n`);
    process.exit(1);
  },
);
