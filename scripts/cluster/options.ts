/** `npm run cluster:check` flags, checked once and frozen. */
import { intFlag, parseFlags, stringFlag, switchFlag, UsageError } from '../load/argv.js';
import { randomSeed } from './rand.js';

export interface CheckOptions {
  nodes: number;
  runs: number;
  users: number;
  seed: number;
  durationMs: number;
  kills: number;
  pauses: number;
  redisRestarts: number;
  leaseMs: number;
  /** USER_MAX_CONCURRENT_RUNS on every node. */
  cap: number;
  /** MAX_RUN_ATTEMPTS on every node. */
  maxAttempts: number;
  /** PostgreSQL server (no database name) where the checker creates its database; or a database to use as is. */
  postgresServer: string;
  databaseUrl: string | null;
  /** The shared Redis (a fresh key prefix on it), unless Redis restarts are asked for (a private server then). */
  redisUrl: string;
  /** No REDIS_URL: one node, single-node mode (before the cluster core exists, or to compare). */
  noRedis: boolean;
  keep: boolean;
  logDir: string | null;
  out: string | null;
  /** Re-check a history saved by an earlier run instead of running one. */
  checkFile: string | null;
  quick: boolean;
}

export const HELP = `npm run cluster:check -- [flags]

Starts N Atoll nodes on a fresh PostgreSQL database and Redis key prefix, runs a seeded workload while it kills,
restarts and pauses nodes, then checks the whole history (README "Running several nodes"). Exit 0: no violation;
1: violations (printed with each violating run's history); 2: bad flags; 3: the cluster could not be set up.

  --nodes N          nodes (3)
  --runs N           runs to send (1000)
  --users N          users (12)
  --seed N           the workload's seed (random, printed: pass it again to replay the same plan)
  --duration S       seconds over which the runs are sent (runs / 15)
  --kills N          SIGKILL a node, then restart it, N times (3)
  --pause N          SIGSTOP a node past NODE_LEASE_MS, then SIGCONT, N times (1)
  --redis-restart    restart Redis once mid-run: the nodes then use a private redis-server this checker starts on a
                     free port, so nothing else using the machine's Redis is disturbed
  --lease-ms MS      NODE_LEASE_MS of every node (2000)
  --cap N            USER_MAX_CONCURRENT_RUNS of every node (2)
  --max-attempts N   MAX_RUN_ATTEMPTS of every node (3)
  --postgres URL     PostgreSQL server where a fresh database is made (ATOLL_TEST_POSTGRESQL, else postgresql://postgres@127.0.0.1:5432)
  --database-url URL use this database instead (not dropped)
  --redis-url URL    Redis (redis://127.0.0.1:6379); a fresh key prefix on it, removed at the end
  --no-redis         no REDIS_URL: one node in single-node mode (needs --nodes 1)
  --keep             keep the database and the logs afterwards (they are kept anyway when a violation is found)
  --logs DIR         where the nodes' logs and the history go (a temporary folder)
  --out FILE         write the result (counts, violations) as JSON
  --check FILE       check a history.json saved by an earlier run, without running anything
  --quick            the short variant npm test runs: 3 nodes, 150 runs, 6 users, 12 s, 1 kill, no pause
`;

export function parseCheckOptions(argv: readonly string[], env: NodeJS.ProcessEnv): CheckOptions | 'help' {
  const flags = parseFlags(argv, {
    nodes: 'value', runs: 'value', users: 'value', seed: 'value', duration: 'value', kills: 'value', pause: 'value', 'redis-restart': 'switch',
    'lease-ms': 'value', cap: 'value', 'max-attempts': 'value', postgres: 'value', 'database-url': 'value', 'redis-url': 'value', 'no-redis': 'switch',
    keep: 'switch', logs: 'value', out: 'value', check: 'value', quick: 'switch', help: 'switch',
  });
  if (switchFlag(flags, 'help')) return 'help';
  const quick = switchFlag(flags, 'quick');
  const nodes = intFlag(flags, 'nodes', 3, 1, 16);
  const runs = intFlag(flags, 'runs', quick ? 150 : 1000, 1, 1_000_000);
  const noRedis = switchFlag(flags, 'no-redis');
  if (noRedis && nodes !== 1) throw new UsageError('--no-redis runs one node (single-node mode): add --nodes 1');
  const redisRestarts = switchFlag(flags, 'redis-restart') ? 1 : 0;
  if (noRedis && redisRestarts > 0) throw new UsageError('--redis-restart needs Redis (drop --no-redis)');
  const defaultDuration = quick ? 12 : Math.max(10, Math.round(runs / 15));
  return Object.freeze({
    nodes,
    runs,
    users: intFlag(flags, 'users', quick ? 6 : 12, 1, 10_000),
    seed: intFlag(flags, 'seed', randomSeed(), 0, 0x7fffffff),
    durationMs: intFlag(flags, 'duration', defaultDuration, 1, 24 * 3600) * 1000,
    kills: intFlag(flags, 'kills', quick ? 1 : 3, 0, 1000),
    pauses: intFlag(flags, 'pause', quick ? 0 : 1, 0, 1000),
    redisRestarts,
    leaseMs: intFlag(flags, 'lease-ms', 2000, 1000, 600_000),
    cap: intFlag(flags, 'cap', 2, 1, 1000),
    maxAttempts: intFlag(flags, 'max-attempts', 3, 1, 100),
    postgresServer: (stringFlag(flags, 'postgres', null) ?? (env.ATOLL_TEST_POSTGRESQL || 'postgresql://postgres@127.0.0.1:5432')).replace(/\/+$/, ''),
    databaseUrl: stringFlag(flags, 'database-url', null),
    redisUrl: stringFlag(flags, 'redis-url', 'redis://127.0.0.1:6379'),
    noRedis,
    keep: switchFlag(flags, 'keep'),
    logDir: stringFlag(flags, 'logs', null),
    out: stringFlag(flags, 'out', null),
    checkFile: stringFlag(flags, 'check', null),
    quick,
  });
}
