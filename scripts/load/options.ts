/** `npm run load` flags: parsed, validated with messages that name the flag, and documented by --help. */
import { UsageError, intFlag, numberFlag, parseFlags, stringFlag, switchFlag } from './argv.js';

/** Every misbehaviour of the built-in chaos agent, and how a contained run of it must end. */
export const CHAOS_EXPECTED: Record<string, { status: string; code: string | null }> = {
  throw: { status: 'failed', code: 'AGENT_ERROR' },
  exit: { status: 'failed', code: 'WORKER_CRASHED' },
  hang: { status: 'timeout', code: 'TIMEOUT' },
  hang_async: { status: 'timeout', code: 'TIMEOUT' },
  oom_heap: { status: 'failed', code: 'OUT_OF_MEMORY' },
  oom_fatal: { status: 'failed', code: 'OUT_OF_MEMORY' },
  abort: { status: 'failed', code: 'WORKER_CRASHED' },
  oom_external: { status: 'failed', code: 'OUT_OF_MEMORY' },
  oom_map: { status: 'failed', code: 'OUT_OF_MEMORY' },
  oom_string: { status: 'failed', code: 'OUT_OF_MEMORY' },
  oom_json: { status: 'failed', code: 'OUT_OF_MEMORY' },
  recursion: { status: 'failed', code: 'AGENT_ERROR' },
  leak_timer: { status: 'completed', code: null },
  leak_socket: { status: 'completed', code: null },
  leak_child: { status: 'failed', code: 'AGENT_ERROR' },
  leak_global: { status: 'completed', code: null },
  leak_prototype: { status: 'completed', code: null },
  flood_events: { status: 'failed', code: 'LIMIT_EXCEEDED' },
  huge_event: { status: 'failed', code: 'LIMIT_EXCEEDED' },
  huge_result: { status: 'failed', code: 'LIMIT_EXCEEDED' },
  fill_disk: { status: 'failed', code: 'LIMIT_EXCEEDED' },
  slow: { status: 'completed', code: null },
  busy: { status: 'completed', code: null },
  ok: { status: 'completed', code: null },
};

/**
 * The cell killers (oom_fatal, abort, oom_external) are left out by default only because each costs a cell
 * restart and a quarantine pass (about a second); the healthy runs that share the cell are run again and
 * complete. `--chaos-modes all` takes every mode.
 */
export const DEFAULT_CHAOS_MODES = ['throw', 'exit', 'hang', 'hang_async', 'oom_heap', 'recursion', 'leak_timer', 'leak_global', 'flood_events'];

/** Hard ceiling on runs per user so that no flag combination makes an unbounded loop. */
export const MAX_RUNS_PER_USER = 100_000;

export interface LoadOptions {
  url: string;
  users: number;
  /** Count cap per user (always set: a bound even in duration mode). */
  runsPerUser: number;
  /** Time cap per phase in ms, or null for count mode. */
  durationMs: number | null;
  thinkMs: { min: number; max: number };
  rampUpMs: number;
  burst: boolean;
  agent: string;
  input: { text: string; [key: string]: unknown };
  chaos: number;
  chaosModes: string[];
  chaosMs: number;
  baseline: boolean;
  runTimeoutMs: number;
  ackTimeoutMs: number;
  maxTimeMs: number;
  userPrefix: string;
  jwtSecret: string | null;
  /** --metrics-token: the server's METRICS_TOKEN, for its /metrics (null: sent without one). */
  metricsToken: string | null;
  verifyLimit: number;
  metricsEveryMs: number;
  out: string;
  progress: 'auto' | 'off';
}

const KINDS = {
  url: 'value', users: 'value', runs: 'value', duration: 'value', think: 'value', 'ramp-up': 'value', burst: 'switch',
  agent: 'value', input: 'value', chaos: 'value', 'chaos-modes': 'value', 'chaos-ms': 'value', 'no-baseline': 'switch',
  'run-timeout': 'value', 'ack-timeout': 'value', 'max-time': 'value', 'user-prefix': 'value', 'jwt-secret': 'value',
  'metrics-token': 'value', verify: 'value', 'metrics-every': 'value', out: 'value', quiet: 'switch', help: 'switch',
} as const;

export function helpText(defaultUrl: string): string {
  return `npm run load -- [flags]    load generator: real socket.io users against a running Atoll

Target
  --url URL             server to load (default ${defaultUrl}; PORT picks the port)
  --jwt-secret SECRET   sign user tokens with the server's AUTH_JWT_SECRET instead of POST /v1/auth/dev-login
  --metrics-token T     the server's METRICS_TOKEN, if it asks for one to read /metrics

Workload
  --users N             concurrent users, one socket each (default 10)
  --runs N              runs per user (default 10; with --duration it is the cap, default ${MAX_RUNS_PER_USER})
  --duration S          keep every user busy for S seconds instead of a fixed count
  --think MS|MIN-MAX    pause between a user's runs, fixed or uniform in a range (default 0)
  --ramp-up S           start users evenly over S seconds (default 0)
  --burst               every user sends all its runs at once without waiting (needs --runs, ignores --ramp-up)
  --agent NAME          agent of the healthy runs (default echo)
  --input TEXT|JSON     healthy input: a text, or a JSON object with a "text" string (default "hello from load")
  --chaos SHARE         share of runs that misbehave, 0..1 (default 0); needs ENABLE_CHAOS_AGENTS=1 on the server
  --chaos-modes LIST    comma list of chaos modes the chaos runs are dealt over, round robin ("all": every mode)
                        (default ${DEFAULT_CHAOS_MODES.join(',')}); oom_fatal, which
                        kills a whole cell, only on request; modes the script does not know are reported, not judged
  --chaos-ms MS         input.ms of the slow mode (default 1000)
  --no-baseline         with --chaos, skip the same load without chaos that is run first for comparison

Bounds
  --run-timeout S       wait at most S seconds for a run's terminal event (default 120)
  --ack-timeout S       wait at most S seconds for a start_agent acknowledgement (default 10)
  --max-time S          hard wall-clock cap of each phase; no new run starts after it (default 900)

Report
  --verify N            compare at most N runs with GET /v1/runs/:id/events (default 1000; 0 = none)
  --metrics-every MS    sample GET /metrics this often during the load (default 1000)
  --out FILE            JSON report path (default data/load-reports/load-<time>.json)
  --user-prefix P       user ids are P1..PN (default load-<random>-)
  --quiet               no live progress on stderr
  --help                this text

Exit status: 0 when every healthy run completed correctly and no isolation fault was seen, 1 otherwise,
2 for a usage error, 3 when the server cannot be reached.
`;
}

export function parseLoadOptions(argv: readonly string[], env: NodeJS.ProcessEnv, now: Date): LoadOptions | 'help' {
  const flags = parseFlags(argv, KINDS);
  if (switchFlag(flags, 'help')) return 'help';
  const url = stringFlag(flags, 'url', defaultUrl(env)).replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]+$/.test(url)) throw new UsageError(`--url must be like http://127.0.0.1:3000 (got ${JSON.stringify(url)})`);

  const durationS = flags.has('duration') ? numberFlag(flags, 'duration', 0, 0.1, 86_400) : null;
  const burst = switchFlag(flags, 'burst');
  if (burst && durationS !== null) throw new UsageError('--burst sends a fixed count at once: use it with --runs, not --duration');
  const runsPerUser = intFlag(flags, 'runs', durationS === null ? 10 : MAX_RUNS_PER_USER, 1, MAX_RUNS_PER_USER);

  const chaos = numberFlag(flags, 'chaos', 0, 0, 1);
  const modesFlag = stringFlag(flags, 'chaos-modes', DEFAULT_CHAOS_MODES.join(','));
  const chaosModes = (modesFlag === 'all' ? Object.keys(CHAOS_EXPECTED) : modesFlag.split(',')).map((m) => m.trim()).filter(Boolean);
  // Modes outside CHAOS_EXPECTED are allowed (the chaos agent grows); their outcomes are reported, not judged.
  for (const m of chaosModes) {
    if (!/^[a-z0-9_]{1,64}$/.test(m)) throw new UsageError(`--chaos-modes: ${JSON.stringify(m)} is not a mode name (known: ${Object.keys(CHAOS_EXPECTED).join(', ')})`);
  }
  if (chaosModes.length === 0) throw new UsageError('--chaos-modes needs at least one mode');

  const userPrefix = stringFlag(flags, 'user-prefix', `load-${now.getTime().toString(36)}-`);
  if (!/^[A-Za-z0-9._:@-]{1,100}$/.test(userPrefix)) throw new UsageError('--user-prefix may hold only letters, digits and . _ : @ - (at most 100)');

  return {
    url,
    users: intFlag(flags, 'users', 10, 1, 10_000),
    runsPerUser,
    durationMs: durationS === null ? null : Math.round(durationS * 1000),
    thinkMs: parseThink(stringFlag(flags, 'think', '0')),
    rampUpMs: Math.round(numberFlag(flags, 'ramp-up', 0, 0, 3600) * 1000),
    burst,
    agent: parseAgent(stringFlag(flags, 'agent', 'echo')),
    input: parseInput(stringFlag(flags, 'input', 'hello from load')),
    chaos,
    chaosModes,
    chaosMs: intFlag(flags, 'chaos-ms', 1000, 0, 600_000),
    baseline: chaos > 0 && !switchFlag(flags, 'no-baseline'),
    runTimeoutMs: Math.round(numberFlag(flags, 'run-timeout', 120, 1, 86_400) * 1000),
    ackTimeoutMs: Math.round(numberFlag(flags, 'ack-timeout', 10, 0.1, 600) * 1000),
    maxTimeMs: Math.round(numberFlag(flags, 'max-time', 900, 1, 86_400) * 1000),
    userPrefix,
    jwtSecret: stringFlag(flags, 'jwt-secret', null),
    metricsToken: stringFlag(flags, 'metrics-token', null),
    verifyLimit: intFlag(flags, 'verify', 1000, 0, 1_000_000),
    metricsEveryMs: intFlag(flags, 'metrics-every', 1000, 100, 60_000),
    out: stringFlag(flags, 'out', `data/load-reports/load-${now.toISOString().replace(/[:.]/g, '-')}.json`),
    progress: switchFlag(flags, 'quiet') ? 'off' : 'auto',
  };
}

export function defaultUrl(env: NodeJS.ProcessEnv): string {
  return `http://127.0.0.1:${env.PORT && /^\d+$/.test(env.PORT) && env.PORT !== '0' ? env.PORT : '3000'}`;
}

function parseThink(raw: string): { min: number; max: number } {
  const m = /^(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))?$/.exec(raw);
  if (!m) throw new UsageError(`--think must be milliseconds like 200 or a range like 100-500 (got ${JSON.stringify(raw)})`);
  const min = Number(m[1]);
  const max = m[2] === undefined ? min : Number(m[2]);
  if (max < min || max > 600_000) throw new UsageError(`--think range must be ascending and at most 600000 ms (got ${JSON.stringify(raw)})`);
  return { min, max };
}

function parseAgent(raw: string): string {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(raw)) throw new UsageError(`--agent must be an agent name (letters, digits, _ -) (got ${JSON.stringify(raw)})`);
  return raw;
}

function parseInput(raw: string): LoadOptions['input'] {
  if (!raw.trimStart().startsWith('{')) return { text: raw };
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    throw new UsageError(`--input looks like JSON but does not parse: ${(err as Error).message}`);
  }
  if (!value || typeof value !== 'object' || typeof (value as { text?: unknown }).text !== 'string') {
    throw new UsageError('--input JSON must be an object with a "text" string');
  }
  return value as LoadOptions['input'];
}
