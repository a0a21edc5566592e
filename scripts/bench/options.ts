/** `npm run bench` flags. --quick is the seconds-long mode the tests use; figures from it are not meaningful. --cluster: the cluster bench. */
import { intFlag, numberFlag, parseFlags, stringFlag, switchFlag, UsageError } from '../load/argv.js';
import type { BenchDatabaseKind } from './databases.js';

export interface BenchOptions {
  quick: boolean;
  /** Atoll's rows on each of these, in this order; memory and recovery on the first. */
  databases: BenchDatabaseKind[];
  /** The PostgreSQL server (URL of a database to connect through) on which the bench creates its databases. */
  postgresqlUrl: string;
  reps: number;
  runs: number;
  limitRuns: number;
  /** A round stops taking new runs after this long (a slow design then runs fewer). */
  roundMs: number;
  warmup: number;
  /** Warm-up goes on (up to --runs) until this long has passed: JIT and caches settle in time, not in runs. */
  warmupMs: number;
  clients: number;
  inflight: number;
  memoryLevels: [number, number];
  holdMs: number;
  recoveryReps: number;
  /** Each paced phase at half of peak sends runs for this long. */
  pacedMs: number;
  /** An earlier report to print a before/after table against, and (instead of running) the report to compare it with. */
  compare: string | null;
  current: string | null;
  out: string;
  markdown: string | null;
  /** The cluster bench (scripts/bench/cluster-bench.ts) instead of the default one. */
  cluster: boolean;
  /** Its Redis server: every cluster gets a fresh key prefix there. */
  redisUrl: string;
  latencyRuns: number;
  takeoverRounds: number;
  /** NODE_LEASE_MS of each takeover measurement; the first is also the throughput and latency nodes'. */
  takeoverLeaseMs: number[];
}

export const HELP = `npm run bench -- [flags]    Atoll against its limit and its alternatives, same machine, same workload

Starts everything it needs (Atoll servers on ephemeral ports with scratch databases, the baselines, a raw
Piscina pool) and prints a markdown table. Workload: the agent scripts/bench-agents/steps.mjs (an
agent_thinking and a partial_result event, then returns). Every figure is the median of --reps repetitions.

  --reps N             repetitions of every measurement (default 3; --quick: 1)
  --runs N             runs per repetition for the socket variants (default 300; --quick: 10)
  --limit-runs N       tasks per repetition for raw Piscina (default 10 x --runs)
  --round-seconds S    a repetition stops starting runs after S seconds, so slow designs run fewer (default 10;
                       --quick: 3)
  --warmup N           runs before measuring each design (default 30; --quick: 2)
  --warmup-seconds S   and keep warming up until S seconds have passed (default 2; --quick: 0)
  --database D         sqlite, postgresql or both: the database of Atoll's rows (default sqlite). both: every
                       Atoll row on each, side by side; memory and recovery on SQLite
  --postgresql URL     the PostgreSQL server where each Atoll gets a fresh database, dropped after it (default
                       postgresql://postgres@127.0.0.1:5432/postgres; the bench connects to that database to
                       create and drop atoll_bench_* databases)
  --clients N          socket.io clients (default 4)
  --inflight N         runs in flight per client (default 2)
  --memory-levels A,B  concurrent in-flight runs at which memory is measured (default 2,16; --quick: 2,4)
  --hold-ms MS         how long each memory-probe run stays in flight (default 2500; --quick: 2000)
  --recovery-reps N    cell kills, each on a server that had no cell death before (default 3; --quick: 1)
  --paced-seconds S    each phase at half of peak sends runs for S seconds (default 10; --quick: 1.5): Atoll with
                       its defaults on each database at half the runs/s of its own row above, healthy runs only
                       (time to first event and to the terminal event); then, on the first database, a server with
                       ENABLE_CHAOS_AGENTS=1 and RUN_TIMEOUT_MS=1000 at the same rate, without and then with 20%
                       chaos runs (the load script's default modes): healthy runs' p99 with / without
  --compare FILE       after the run, a before/after table of every figure of FILE (an earlier report) and of this
                       run's report, with after / before and after - before; a figure a report lacks shows as "-"
  --current FILE       with --compare: compare FILE with this report instead of running the bench
  --out FILE           JSON report (default data/bench-reports/bench-<time>.json; with --cluster
                       bench-cluster-<time>.json)
  --markdown FILE      also write the markdown table there
  --quick              a seconds-long smoke run (tests)
  --help               this text

  --cluster            instead: several nodes on this machine (PostgreSQL of --postgresql, Redis of --redis;
                       a fresh database and key prefix per cluster, removed after). Runs/s of the same workload
                       through one node and through three (the --clients dealt round robin over the nodes;
                       default 6 clients), and through the single-node mode; event latency within one node
                       against across nodes; takeover time after SIGKILL of a node. --reps, --runs,
                       --round-seconds, --warmup, --warmup-seconds, --clients, --inflight apply, with longer
                       defaults (2000 runs, 20 s, 300 runs and 5 s of warm-up: each node starts worker threads
                       for every user it serves, three nodes three times over); the memory and recovery flags
                       do not
  --redis URL          the Redis server (default redis://127.0.0.1:6379)
  --latency-runs N     runs followed by a socket on every node (default 200; --quick: 10)
  --takeover-rounds N  node kills per lease (default 10; --quick: 1)
  --takeover-lease-ms LIST  NODE_LEASE_MS of each takeover measurement, the first also that of the throughput
                       and latency nodes (default 10000,2000; --quick: 3000)
`;

const KINDS = {
  reps: 'value', runs: 'value', 'limit-runs': 'value', 'round-seconds': 'value', warmup: 'value', clients: 'value', inflight: 'value', 'memory-levels': 'value',
  'hold-ms': 'value', 'warmup-seconds': 'value', 'recovery-reps': 'value', out: 'value', markdown: 'value', quick: 'switch', help: 'switch',
  'paced-seconds': 'value', compare: 'value', current: 'value',
  database: 'value', postgresql: 'value', cluster: 'switch', redis: 'value', 'latency-runs': 'value', 'takeover-rounds': 'value', 'takeover-lease-ms': 'value',
} as const;

const DEFAULT_POSTGRESQL = 'postgresql://postgres@127.0.0.1:5432/postgres';
const DATABASES: Record<string, BenchDatabaseKind[]> = { sqlite: ['sqlite'], postgresql: ['postgresql'], both: ['sqlite', 'postgresql'] };

export function parseBenchOptions(argv: readonly string[], now: Date): BenchOptions | 'help' {
  const flags = parseFlags(argv, KINDS);
  if (switchFlag(flags, 'help')) return 'help';
  const quick = switchFlag(flags, 'quick');
  const cluster = switchFlag(flags, 'cluster');
  // The cluster bench's rounds are longer: a node starts worker threads for each user whose runs it claims and
  // compiles its hot paths, three nodes three times over; 300-run rounds measured those starts, not coordination.
  const runs = intFlag(flags, 'runs', quick ? 10 : cluster ? 2000 : 300, 1, 100_000);
  const levelsRaw = stringFlag(flags, 'memory-levels', quick ? '2,4' : '2,16');
  const m = /^(\d+),(\d+)$/.exec(levelsRaw);
  const levels = m ? ([Number(m[1]), Number(m[2])] as [number, number]) : null;
  // Atoll runs two cells, so a level must split evenly over them.
  if (!levels || levels[0] < 2 || levels[1] <= levels[0] || levels[1] > 128 || levels.some((l) => l % 2 !== 0)) {
    throw new UsageError(`--memory-levels must be two even numbers A,B with 2 <= A < B <= 128 (got ${JSON.stringify(levelsRaw)})`);
  }
  const database = stringFlag(flags, 'database', cluster ? 'postgresql' : 'sqlite');
  if (cluster && database !== 'postgresql') throw new UsageError('--cluster runs on PostgreSQL only (--database postgresql, the default with --cluster)');
  const databases = Object.hasOwn(DATABASES, database) ? DATABASES[database] : undefined;
  if (!databases) throw new UsageError(`--database must be sqlite, postgresql or both (got ${JSON.stringify(database)})`);
  const postgresqlUrl = stringFlag(flags, 'postgresql', DEFAULT_POSTGRESQL);
  if (!/^postgres(ql)?:\/\/[^/]+\/[^/?#]+([?#].*)?$/.test(postgresqlUrl)) throw new UsageError('--postgresql must be like postgresql://user:password@host:5432/postgres');
  const redisUrl = stringFlag(flags, 'redis', 'redis://127.0.0.1:6379');
  if (!/^rediss?:\/\/\S+$/.test(redisUrl)) throw new UsageError('--redis must be like redis://127.0.0.1:6379');
  const leasesRaw = stringFlag(flags, 'takeover-lease-ms', quick ? '3000' : '10000,2000');
  const takeoverLeaseMs = leasesRaw.split(',').map(Number);
  // NODE_LEASE_MS's own range (server/config.ts).
  if (!/^\d+(,\d+)*$/.test(leasesRaw) || takeoverLeaseMs.some((ms) => ms < 1000 || ms > 600_000)) {
    throw new UsageError(`--takeover-lease-ms must be a comma-separated list of milliseconds from 1000 to 600000 (got ${JSON.stringify(leasesRaw)})`);
  }
  const compare = stringFlag(flags, 'compare', null);
  const current = stringFlag(flags, 'current', null);
  if (current !== null && compare === null) throw new UsageError('--current needs --compare (the earlier report)');
  if (compare !== null && cluster) throw new UsageError('--compare reads reports of the default bench, not of --cluster');
  return {
    quick,
    databases,
    postgresqlUrl,
    reps: intFlag(flags, 'reps', quick ? 1 : 3, 1, 50),
    runs,
    limitRuns: intFlag(flags, 'limit-runs', runs * 10, 1, 1_000_000),
    roundMs: Math.round(numberFlag(flags, 'round-seconds', quick ? 3 : cluster ? 20 : 10, 0.5, 600) * 1000),
    warmup: intFlag(flags, 'warmup', quick ? 2 : cluster ? 300 : 30, 0, 10_000),
    warmupMs: Math.round(numberFlag(flags, 'warmup-seconds', quick ? 0 : cluster ? 5 : 2, 0, 600) * 1000),
    clients: intFlag(flags, 'clients', cluster ? 6 : 4, 1, 256),
    inflight: intFlag(flags, 'inflight', 2, 1, 256),
    memoryLevels: levels,
    holdMs: intFlag(flags, 'hold-ms', quick ? 2000 : 2500, 200, 60_000), // --quick too: a child process may take a second to start on a busy machine
    recoveryReps: intFlag(flags, 'recovery-reps', quick ? 1 : 3, 1, 20),
    pacedMs: Math.round(numberFlag(flags, 'paced-seconds', quick ? 1.5 : 10, 0.5, 600) * 1000),
    compare,
    current,
    out: stringFlag(flags, 'out', `data/bench-reports/bench-${cluster ? 'cluster-' : ''}${now.toISOString().replace(/[:.]/g, '-')}.json`),
    markdown: stringFlag(flags, 'markdown', null),
    cluster,
    redisUrl,
    latencyRuns: intFlag(flags, 'latency-runs', quick ? 10 : 200, 1, 100_000),
    takeoverRounds: intFlag(flags, 'takeover-rounds', quick ? 1 : 10, 1, 1000),
    takeoverLeaseMs,
  };
}
