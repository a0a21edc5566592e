/**
 * Configuration: read from the environment once, validated with clear errors, frozen, then passed down.
 * This and the other composition roots are the only places that read process.env.
 */
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import ipaddr from 'ipaddr.js';
import proxyAddr from 'proxy-addr';
import { z } from 'zod';
import { BURST_WORKERS_PER_WORKER, type AgentEgress, type AgentSettings } from '../protocol/cell-messages.js';
import { deepFreeze } from '../protocol/deep-freeze.js';
import { DEFAULT_MODEL_OPERATIONS, parseModelOperations, type ModelOperations } from '../protocol/model-operations.js';
import { descriptorCeiling } from './cells/descriptor-ceiling.js';
import { DATABASE_URL_HINT, DATABASE_URL_PATTERN, maskQueryPasswords, parseDatabaseUrl, type DatabaseTarget } from './store/database-target.js';

const bool = z
  .enum(['0', '1', 'true', 'false', ''])
  .transform((v) => v === '1' || v === 'true');
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

/** TRUST_PROXY, validated: false (the peer is the client), true (every hop), a hop count, or the proxies' addresses/subnets. */
export type TrustProxy = boolean | number | readonly string[];

/** What express's `trust proxy` accepts that makes sense from an environment variable (server/http/client-address.ts). */
const trustProxy = z.string().transform((v, ctx): TrustProxy => {
  const text = v.trim().toLowerCase();
  if (text === 'true') return true;
  if (text === 'false') return false;
  if (/^\d+$/.test(text)) return Number(text) === 0 ? false : Number(text);
  const proxies = text.split(',').map((p) => p.trim());
  try {
    if (proxies.some((p) => p === '')) throw new Error('an empty entry');
    proxyAddr.compile(proxies);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `must be true, false, a number of proxy hops, or comma-separated proxy addresses/subnets (loopback, linklocal, uniquelocal, 10.0.0.0/8, ::1…): ${(err as Error).message}` });
    return z.NEVER;
  }
  return proxies;
});
/** AGENT_EGRESS_ALLOW: comma-separated addresses or subnets, each kept as a CIDR (an address is its own /32 or /128). */
const egressAllow = z.string().transform((v, ctx): string[] => {
  const entries = v.split(',').map((e) => e.trim()).filter(Boolean);
  const cidrs: string[] = [];
  for (const entry of entries) {
    const [address, bits] = entry.split('/');
    try {
      // net.isIP first: the ipaddr package also reads shorthand and hex forms ("10.0.0"), which no connection carries.
      if (!net.isIP(address!)) throw new Error('not an address');
      const ip = ipaddr.parse(address!);
      const prefix = bits === undefined ? (ip.kind() === 'ipv4' ? 32 : 128) : ipaddr.parseCIDR(entry)[1];
      cidrs.push(`${ip.toString()}/${prefix}`);
    } catch {
      ctx.addIssue({ code: 'custom', message: `"${entry}" is not an IP address or subnet: give comma-separated addresses or CIDRs like 10.0.5.20,10.1.0.0/16,fd00:1::/64` });
      return z.NEVER;
    }
  }
  return cidrs;
});
// OTLP over HTTP only: gRPC would add a second transport stack for what a collector's :4318 takes anyway.
const otlpProtocol = z.enum(['http/protobuf', 'http/json'], { message: 'must be http/protobuf or http/json (gRPC is not supported: use the collector\'s HTTP port, 4318)' });

const EnvSchema = z.object({
  // Case-insensitive, and only known values: "Production" must not silently run as development.
  NODE_ENV: z
    .string()
    .transform((v) => v.toLowerCase())
    .pipe(z.enum(['development', 'production', 'test'], { message: 'must be development, production or test' }))
    .default('development'),
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: int(0, 65535).default(3000),
  DATABASE_URL: z.string().regex(DATABASE_URL_PATTERN, DATABASE_URL_HINT).default('file:./data/atoll.db'),
  AGENTS_DIR: z.string().min(1).optional(),
  AGENT_CACHE_DIR: z.string().min(1).optional(),
  CELLS: int(1, 64).default(2),
  THREADS_PER_CELL: int(1, 256).default(2),
  RUN_TIMEOUT_MS: int(100, 86_400_000).default(30_000),
  RUN_MEMORY_MB: int(16, 65_536).default(128),
  CELL_MEMORY_MB: int(64, 1_048_576).optional(),
  CELL_MAX_DESCRIPTORS: int(0, 10_000_000).optional(),
  MAX_RUNS_PER_WORKER: int(0, 1_000_000_000).default(0),
  WORKER_DB_WARMUP: z.enum(['lazy', 'eager']).default('lazy'),
  THREAD_LOCKDOWN: bool.default(true),
  THREAD_REUSE: z.enum(['same_user', 'any']).default('same_user'),
  CPU_DEMOTE_AFTER_MS: int(0, 86_400_000).default(500),
  AGENT_EGRESS: z.enum(['public', 'none', 'any'], { message: 'must be public (the default), none or any' }).default('public'),
  AGENT_EGRESS_ALLOW: egressAllow.optional(),
  CELL_SANDBOX: z.enum(['permission', 'off']).default('permission'),
  CELL_UID_BASE: int(0, 4_000_000_000).default(61_000),
  SCRATCH_DIR: z.string().min(1).optional(),
  WARM_SPARE_THREADS: int(0, 64).default(1),
  DB_SYNCHRONOUS: z.enum(['normal', 'full']).default('normal'),
  DB_POOL_SIZE: int(1, 1000).default(4),
  DB_STARTUP_WAIT_MS: int(0, 3_600_000).default(60_000),
  REDIS_URL: z.string().regex(/^rediss?:\/\/\S+$/, 'must be a Redis URL like redis://127.0.0.1:6379 (rediss:// for TLS)').optional(),
  REDIS_KEY_PREFIX: z.string().regex(/^[A-Za-z0-9:._-]{1,64}$/, 'must be 1-64 of A-Z a-z 0-9 : . _ -').default('atoll:'),
  NODE_ID: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 of A-Z a-z 0-9 . _ -').optional(),
  NODE_LEASE_MS: int(1_000, 600_000).default(10_000),
  MAX_RUN_ATTEMPTS: int(1, 10).default(3),
  QUARANTINE_CELLS: int(1, 64).optional(),
  CELL_KILLER_QUARANTINE_MS: int(0, 86_400_000).default(600_000),
  CELL_RECYCLE_RSS_RATIO: z.coerce.number().min(0).max(100).default(1.3),
  CELL_SILENCE_TIMEOUT_MS: int(2_000, 3_600_000).default(30_000),
  CANCEL_GRACE_MS: int(0, 60_000).default(500),
  SHUTDOWN_GRACE_MS: int(0, 600_000).default(10_000),
  MAX_QUEUED_RUNS: int(0, 1_000_000).default(1000),
  USER_MAX_CONCURRENT_RUNS: int(1, 10_000).default(3),
  USER_MAX_QUEUED_RUNS: int(1, 1_000_000).default(100),
  USER_MAX_STORED_BYTES: int(0, Number.MAX_SAFE_INTEGER).default(1_073_741_824),
  RATE_LIMIT_USER_PER_SEC: int(1, 1_000_000).default(20),
  RATE_LIMIT_USER_BURST: int(1, 1_000_000).default(40),
  RATE_LIMIT_IP_PER_SEC: int(1, 1_000_000).default(50),
  RATE_LIMIT_IP_BURST: int(1, 1_000_000).default(100),
  RATE_LIMIT_AUTH_FAILURES_PER_MIN: int(1, 1_000_000).default(30),
  RATE_LIMIT_AUTH_FAILURES_BURST: int(1, 1_000_000).default(10),
  MAX_CONNECTIONS_PER_USER: int(1, 100_000).default(20),
  MAX_CONNECTIONS_PER_IP: int(1, 100_000).default(100),
  TRUST_PROXY: trustProxy.default(false),
  IPV6_BUDGET_PREFIX: int(8, 128).default(64),
  SOCKET_MAX_BUFFERED_PACKETS: int(10, 1_000_000).default(1000),
  SOCKET_MAX_BUFFERED_BYTES: int(65_536, 1_073_741_824).default(4_194_304),
  SOCKET_STALL_TIMEOUT_MS: int(1000, 3_600_000).default(30_000),
  HTTP_STALL_TIMEOUT_MS: int(1000, 3_600_000).default(30_000),
  TOKEN_EXPIRY_WARNING_MS: int(0, 86_400_000).default(60_000),
  MAX_INPUT_BYTES: int(16, 16_777_216).default(65_536),
  MAX_EVENTS_PER_RUN: int(1, 1_000_000).default(10_000),
  MAX_EVENT_BYTES: int(64, 16_777_216).default(65_536),
  MAX_RUN_EVENT_BYTES: int(64, 1_073_741_824).default(16_777_216),
  MAX_RESULT_BYTES: int(64, 67_108_864).default(1_048_576),
  RUN_SCRATCH_MB: int(0, 1_048_576).default(256),
  RUN_SCRATCH_FILES: int(0, 10_000_000).default(10_000),
  RUN_OPEN_FILES: int(0, 1_000_000).default(256),
  RUN_LOG_BYTES_PER_S: int(0, 1_073_741_824).default(65_536),
  AUTH_JWT_SECRET: z.string().min(16, 'must be at least 16 characters').optional(),
  AUTH_MAX_TOKEN_LIFETIME_S: int(60, 31_536_000).default(86_400),
  METRICS_TOKEN: z
    .string()
    .min(16, 'must be at least 16 characters')
    .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces (it travels in an Authorization header)')
    .optional(),
  CORS_ORIGINS: z
    .string()
    .transform((v) => v.split(',').map((o) => o.trim()).filter(Boolean))
    .pipe(z.array(z.string().regex(/^https?:\/\/[^/\s]+$/, 'each must be an origin like https://chat.example.com (scheme, host, optional port; no path)')))
    .optional(),
  AUTH_DEV_LOGIN: bool.default(false),
  ENABLE_CHAOS_AGENTS: bool.default(false),
  LLM_BASE_URL: z.url({ message: 'must be an http(s) URL like http://127.0.0.1:11434/v1' }).optional(),
  LLM_API_KEY: z.string().optional(),
  LLM_MODEL: z.string().min(1).optional(),
  LLM_MAX_CONTEXT_MESSAGES: int(0, 1000).default(20),
  LLM_OPERATIONS: z
    .string()
    .default(DEFAULT_MODEL_OPERATIONS)
    .transform((v, ctx) => {
      const parsed = parseModelOperations(v);
      if ('operations' in parsed) return parsed.operations;
      ctx.addIssue({ code: 'custom', message: parsed.error });
      return z.NEVER;
    }),
  TOOL_TIMEOUT_MS: int(10, 600_000).default(10_000),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  ALERT_ACTIVE_CONTEXTS: int(1, 1_000_000).default(10),
  // Traces (server/tracing/): the standard OpenTelemetry variables; unset endpoint, no tracing at all.
  OTEL_EXPORTER_OTLP_ENDPOINT: z.url({ protocol: /^https?$/, message: 'must be the collector base URL like http://127.0.0.1:4318 (/v1/traces is added)' }).optional(),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: z.url({ protocol: /^https?$/, message: 'must be the full traces URL like http://127.0.0.1:4318/v1/traces' }).optional(),
  OTEL_EXPORTER_OTLP_PROTOCOL: otlpProtocol.optional(),
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: otlpProtocol.optional(),
  OTEL_SERVICE_NAME: z.string().min(1).default('atoll'),
  OTEL_SDK_DISABLED: bool.default(false),
  OTEL_BSP_SCHEDULE_DELAY: int(0, 3_600_000).default(5000),
});

/** Every variable Atoll reads (README documents each; a test checks). */
export const ENV_VARS = Object.keys(EnvSchema.shape);

/** Variables whose value a configuration error must never print (logs and terminals are not secret). */
const SECRET_VARS = new Set(['AUTH_JWT_SECRET', 'LLM_API_KEY', 'METRICS_TOKEN']);

/**
 * How a configuration error shows a value: secrets hidden, credentials inside URLs masked (the whole userinfo,
 * and password query parameters as maskPassword finds them). Not maskPassword itself: it would print the value
 * as WHATWG URL reads it (C:\x becomes c:\x), and the refused value should read as it was typed.
 */
function shown(name: string, value: string | undefined): string {
  if (value === undefined) return 'unset';
  if (SECRET_VARS.has(name)) return `value hidden, ${value.length} characters`;
  return `got ${JSON.stringify(maskQueryPasswords(value.replace(/\/\/[^/@\s]*@/, '//***@')))}`;
}

export interface Config {
  readonly production: boolean;
  readonly host: string;
  readonly port: number;
  /** DATABASE_URL, parsed: which database and where (server/store/database-target.ts). */
  readonly database: DatabaseTarget;
  readonly agentsDir: string | null;
  readonly cells: number;
  /** Workers (worker threads) per serving cell: its capacity (THREADS_PER_CELL). */
  readonly workersPerCell: number;
  readonly runTimeoutMs: number;
  readonly runMemoryMb: number;
  /** Whole-cell memory limit (RSS, off-heap included) enforced by each cell's watchdog. */
  readonly cellMemoryMb: number;
  /** The most descriptors a cell may hold before the front stops it (server/cells/descriptor-ceiling.ts); 0: no ceiling. */
  readonly cellMaxDescriptors: number;
  /** 0 = unlimited; 1 = a brand-new worker for every run. */
  readonly maxRunsPerWorker: number;
  /** lazy: a worker loads Prisma's query compiler at its first ctx.db query; eager: while it warms up. */
  readonly workerDbWarmup: 'lazy' | 'eager';
  /** SES lockdown() and harden() of the host prototypes in every worker before agents load (THREAD_LOCKDOWN). */
  readonly workerLockdown: boolean;
  /** same_user: a worker that served one user never runs another user's run; any: lockdown and checks only (THREAD_REUSE). */
  readonly workerReuse: 'same_user' | 'any';
  /** Where agent code may connect: public addresses (the default), none or any, plus AGENT_EGRESS_ALLOW's subnets. */
  readonly agentEgress: AgentEgress;
  /** A run that keeps a core busy this long yields to the others (lower OS priority); 0: never. */
  readonly cpuDemoteAfterMs: number;
  /** permission: cells run under Node's permission model (server/cells/cell-sandbox.ts); off: no sandbox. */
  readonly cellSandbox: 'permission' | 'off';
  /** When the front runs as root, cell slot n runs as OS user CELL_UID_BASE + n (0: as the front's user). */
  readonly cellUidBase: number;
  /** Where cells' scratch folders go (null: a folder per front process under the OS temp dir). */
  readonly scratchRoot: string | null;
  /** Where the front keeps AGENTS_DIR's TypeScript agents compiled (null: the OS temp dir's atoll-agent-cache-<uid>). */
  readonly agentCacheDir: string | null;
  /** Idle, warm workers each cell keeps beyond THREADS_PER_CELL, to take runs while replacements warm up (WARM_SPARE_THREADS). */
  readonly warmSpareWorkers: number;
  /** SQLite synchronous mode of the front's write connection: full also survives a power loss. */
  readonly dbSynchronous: 'normal' | 'full';
  /** DB_POOL_SIZE: PostgreSQL only, the front's read connections (reads and the gate's statements); writes have one more. */
  readonly dbPoolSize: number;
  /** DB_STARTUP_WAIT_MS: how long start-up waits for an unreachable database before giving up. */
  readonly dbStartupWaitMs: number;
  /**
   * REDIS_URL set: this node is one of several (server/cluster/): PostgreSQL holds the run queue, Redis carries
   * events and the shared state. null: a single node, which refuses to share its database with another.
   */
  readonly cluster: { readonly redisUrl: string; readonly keyPrefix: string } | null;
  /** NODE_ID: this node's name in the database, metrics and logs (default: host name and pid). */
  readonly nodeId: string;
  /** NODE_LEASE_MS: a node that has not renewed its lease this long is dead; its runs move to other nodes. */
  readonly nodeLeaseMs: number;
  /** How many times a run may be started in all (bystanders of a cell death are run again). */
  readonly maxRunAttempts: number;
  /** At most this many quarantine cells at once (each runs one suspect of a cell death). */
  readonly quarantineCells: number;
  /** A user whose run killed its cell has its runs run alone in quarantine cells this long (0: never). */
  readonly cellKillerQuarantineMs: number;
  /** An idle cell whose RSS exceeds this multiple of its warm baseline is replaced (0: never). */
  readonly cellRecycleRssRatio: number;
  readonly cellSilenceTimeoutMs: number;
  readonly cancelGraceMs: number;
  readonly shutdownGraceMs: number;
  readonly maxQueuedRuns: number;
  readonly maxInputBytes: number;
  readonly userMaxConcurrentRuns: number;
  readonly userMaxQueuedRuns: number;
  /** USER_MAX_STORED_BYTES: a user storing this much (events and messages) has new runs refused; 0: no cap. */
  readonly userMaxStoredBytes: number;
  readonly rateLimits: {
    readonly user: { readonly rate: number; readonly burst: number };
    readonly ip: { readonly rate: number; readonly burst: number };
    /** Failed socket handshakes per address (rate per second). */
    readonly authFailures: { readonly rate: number; readonly burst: number };
  };
  readonly maxConnectionsPerUser: number;
  readonly maxConnectionsPerIp: number;
  /**
   * TRUST_PROXY: which hops' X-Forwarded-For to believe when taking a client's address (HTTP and the socket
   * handshake alike) for the per-address limits; false: the peer's address.
   */
  readonly trustProxy: TrustProxy;
  /**
   * IPV6_BUDGET_PREFIX: an IPv6 client counts against the per-address limits by this many leading bits of its
   * address (an IPv4 address by all of it): a host picks any address of its /64.
   */
  readonly ipv6BudgetPrefix: number;
  readonly socketMaxBufferedPackets: number;
  /** Unsent bytes a socket may have before it counts as stalled; one ack or replay sends at most a quarter. */
  readonly socketMaxBufferedBytes: number;
  /** A socket that takes none of its outstanding data this long is disconnected. */
  readonly socketStallTimeoutMs: number;
  /** An HTTP answer whose connection makes no progress (nothing read, no write completed) this long is cut. */
  readonly httpStallTimeoutMs: number;
  readonly tokenExpiryWarningMs: number;
  /** The run's output caps, and what its scratch folder may hold (0: unbounded; workers/cell/scratch-watch.ts). */
  readonly limits: { readonly maxEventsPerRun: number; readonly maxEventBytes: number; readonly maxRunEventBytes: number; readonly maxResultBytes: number; readonly scratchBytes: number; readonly scratchEntries: number; readonly openFiles: number; readonly logBytesPerSecond: number };
  /** null: not configured; the composition root then provisions a development secret. */
  readonly jwtSecret: string | null;
  /** Tokens whose exp - iat exceeds this are refused (tokens without exp always are). */
  readonly maxTokenLifetimeS: number;
  /** Browser origins allowed besides the server's own (HTTP CORS and the socket handshake's Origin). */
  readonly corsOrigins: readonly string[];
  readonly devLogin: boolean;
  /** METRICS_TOKEN: the bearer token /metrics asks for (null: /metrics is open to whoever reaches the port). */
  readonly metricsToken: string | null;
  readonly enableChaosAgents: boolean;
  readonly logLevel: string;
  /** Above this many active execution contexts for one user, the alert rule fires (exported as a gauge). */
  readonly alertActiveContexts: number;
  /** Settings handed to agents as ctx.settings (validated here, frozen). */
  readonly agentSettings: AgentSettings;
  /** LLM_API_KEY: handed to the cells' model brokers only, never to agents (ctx.settings). */
  readonly llmApiKey: string | null;
  /** LLM_OPERATIONS: what the brokers forward to the model endpoint (protocol/model-operations.ts). */
  readonly llmOperations: ModelOperations;
  /** Where the front exports its spans (null: tracing off, no OpenTelemetry module loaded). */
  readonly tracing: TracingSettings | null;
}

export interface TracingSettings {
  /** The OTLP/HTTP traces URL: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces. */
  readonly url: string;
  readonly protocol: 'http/protobuf' | 'http/json';
  readonly serviceName: string;
  /** How long finished spans wait to be sent together (OTEL_BSP_SCHEDULE_DELAY). */
  readonly scheduledDelayMs: number;
}

/** The traces URL the OpenTelemetry spec derives from the variables (the signal's own endpoint is used as is). */
function tracingOf(e: z.infer<typeof EnvSchema>): TracingSettings | null {
  const base = e.OTEL_EXPORTER_OTLP_ENDPOINT;
  const url = e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? (base ? `${base.replace(/\/+$/, '')}/v1/traces` : null);
  if (!url || e.OTEL_SDK_DISABLED) return null;
  return { url, protocol: e.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? e.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/protobuf', serviceName: e.OTEL_SERVICE_NAME, scheduledDelayMs: e.OTEL_BSP_SCHEDULE_DELAY };
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function loadConfig(env: NodeJS.ProcessEnv, cwd: string): Config {
  // An empty variable means "not set", as in most shells' `VAR= cmd`.
  const parsed = EnvSchema.safeParse(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== '')));
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message} (${shown(String(i.path[0]), env[String(i.path[0])])})`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  const production = e.NODE_ENV === 'production';
  if (production && e.AUTH_DEV_LOGIN) throw new ConfigError('invalid configuration:\n  AUTH_DEV_LOGIN: refused when NODE_ENV=production');
  if (production && !e.AUTH_JWT_SECRET) throw new ConfigError('invalid configuration:\n  AUTH_JWT_SECRET: required when NODE_ENV=production');
  const database = parseDatabaseUrl(e.DATABASE_URL, cwd);
  if (e.REDIS_URL && database.kind !== 'postgresql') {
    throw new ConfigError('invalid configuration:\n  REDIS_URL: several nodes need a shared database: set DATABASE_URL=postgresql://… (SQLite is one node only)');
  }
  if (e.REDIS_URL && !e.AUTH_JWT_SECRET) {
    throw new ConfigError('invalid configuration:\n  AUTH_JWT_SECRET: required with REDIS_URL (every node must verify the same tokens)');
  }
  return deepFreeze({
    production,
    host: e.HOST,
    port: e.PORT,
    database,
    agentsDir: e.AGENTS_DIR ? path.resolve(cwd, e.AGENTS_DIR) : null,
    cells: e.CELLS,
    workersPerCell: e.THREADS_PER_CELL,
    runTimeoutMs: e.RUN_TIMEOUT_MS,
    runMemoryMb: e.RUN_MEMORY_MB,
    // Room for every worker a cell may hold (its capacity and its burst workers) at its heap budget, plus the
    // cell's own baseline (warm spares are idle workers: ~17 MiB each).
    cellMemoryMb: e.CELL_MEMORY_MB ?? 512 + (1 + BURST_WORKERS_PER_WORKER) * e.THREADS_PER_CELL * e.RUN_MEMORY_MB,
    cellMaxDescriptors: e.CELL_MAX_DESCRIPTORS ?? descriptorCeiling({ workersPerCell: e.THREADS_PER_CELL, warmSpareWorkers: e.WARM_SPARE_THREADS, runOpenFiles: e.RUN_OPEN_FILES }),
    maxRunsPerWorker: e.MAX_RUNS_PER_WORKER,
    workerDbWarmup: e.WORKER_DB_WARMUP,
    workerLockdown: e.THREAD_LOCKDOWN,
    workerReuse: e.THREAD_REUSE,
    agentEgress: { mode: e.AGENT_EGRESS, allow: e.AGENT_EGRESS_ALLOW ?? [] },
    cpuDemoteAfterMs: e.CPU_DEMOTE_AFTER_MS,
    cellSandbox: e.CELL_SANDBOX,
    cellUidBase: e.CELL_UID_BASE,
    scratchRoot: e.SCRATCH_DIR ? path.resolve(cwd, e.SCRATCH_DIR) : null,
    agentCacheDir: e.AGENT_CACHE_DIR ? path.resolve(cwd, e.AGENT_CACHE_DIR) : null,
    warmSpareWorkers: e.WARM_SPARE_THREADS,
    dbSynchronous: e.DB_SYNCHRONOUS,
    dbPoolSize: e.DB_POOL_SIZE,
    dbStartupWaitMs: e.DB_STARTUP_WAIT_MS,
    maxRunAttempts: e.MAX_RUN_ATTEMPTS,
    cluster: e.REDIS_URL ? { redisUrl: e.REDIS_URL, keyPrefix: e.REDIS_KEY_PREFIX } : null,
    nodeId: e.NODE_ID ?? `${os.hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 50)}-${process.pid}`,
    nodeLeaseMs: e.NODE_LEASE_MS,
    // One per worker of a serving cell: all suspects of one cell death are re-run at once.
    quarantineCells: e.QUARANTINE_CELLS ?? e.THREADS_PER_CELL,
    cellKillerQuarantineMs: e.CELL_KILLER_QUARANTINE_MS,
    cellRecycleRssRatio: e.CELL_RECYCLE_RSS_RATIO,
    cellSilenceTimeoutMs: e.CELL_SILENCE_TIMEOUT_MS,
    cancelGraceMs: e.CANCEL_GRACE_MS,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    maxQueuedRuns: e.MAX_QUEUED_RUNS,
    maxInputBytes: e.MAX_INPUT_BYTES,
    userMaxConcurrentRuns: e.USER_MAX_CONCURRENT_RUNS,
    userMaxQueuedRuns: e.USER_MAX_QUEUED_RUNS,
    userMaxStoredBytes: e.USER_MAX_STORED_BYTES,
    rateLimits: {
      user: { rate: e.RATE_LIMIT_USER_PER_SEC, burst: e.RATE_LIMIT_USER_BURST },
      ip: { rate: e.RATE_LIMIT_IP_PER_SEC, burst: e.RATE_LIMIT_IP_BURST },
      authFailures: { rate: e.RATE_LIMIT_AUTH_FAILURES_PER_MIN / 60, burst: e.RATE_LIMIT_AUTH_FAILURES_BURST },
    },
    maxConnectionsPerUser: e.MAX_CONNECTIONS_PER_USER,
    maxConnectionsPerIp: e.MAX_CONNECTIONS_PER_IP,
    trustProxy: e.TRUST_PROXY,
    ipv6BudgetPrefix: e.IPV6_BUDGET_PREFIX,
    socketMaxBufferedPackets: e.SOCKET_MAX_BUFFERED_PACKETS,
    socketMaxBufferedBytes: e.SOCKET_MAX_BUFFERED_BYTES,
    socketStallTimeoutMs: e.SOCKET_STALL_TIMEOUT_MS,
    httpStallTimeoutMs: e.HTTP_STALL_TIMEOUT_MS,
    tokenExpiryWarningMs: e.TOKEN_EXPIRY_WARNING_MS,
    limits: { maxEventsPerRun: e.MAX_EVENTS_PER_RUN, maxEventBytes: e.MAX_EVENT_BYTES, maxRunEventBytes: e.MAX_RUN_EVENT_BYTES, maxResultBytes: e.MAX_RESULT_BYTES, scratchBytes: e.RUN_SCRATCH_MB * 1024 * 1024, scratchEntries: e.RUN_SCRATCH_FILES, openFiles: e.RUN_OPEN_FILES, logBytesPerSecond: e.RUN_LOG_BYTES_PER_S },
    jwtSecret: e.AUTH_JWT_SECRET ?? null,
    maxTokenLifetimeS: e.AUTH_MAX_TOKEN_LIFETIME_S,
    corsOrigins: e.CORS_ORIGINS ?? [],
    devLogin: e.AUTH_DEV_LOGIN,
    metricsToken: e.METRICS_TOKEN ?? null,
    enableChaosAgents: e.ENABLE_CHAOS_AGENTS,
    logLevel: e.LOG_LEVEL,
    alertActiveContexts: e.ALERT_ACTIVE_CONTEXTS,
    agentSettings: {
      llm: {
        baseUrl: e.LLM_BASE_URL ?? null,
        model: e.LLM_MODEL ?? null,
        maxContextMessages: e.LLM_MAX_CONTEXT_MESSAGES,
        toolTimeoutMs: e.TOOL_TIMEOUT_MS,
      },
    },
    llmApiKey: e.LLM_API_KEY ?? null,
    llmOperations: e.LLM_OPERATIONS,
    tracing: tracingOf(e),
  });
}
