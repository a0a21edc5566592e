/**
 * Configuration validation on its own: every default, every accepted enum value, refusals with messages
 * that name the variable without printing secrets, the production rules, paths resolved against cwd, the
 * derived values, and a frozen result.
 */
import path from 'node:path';
import { ConfigError, ENV_VARS, loadConfig } from '../../server/config';
import { BURST_WORKERS_PER_WORKER } from '../../protocol/cell-messages';

const CWD = '/srv/atoll';
const load = (env: Record<string, string>) => loadConfig(env, CWD);
/** The configuration error's text, or a note that none was thrown. */
function refusal(env: Record<string, string>): string {
  try {
    load(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).name).toBe('ConfigError');
    return (err as Error).message;
  }
  return 'accepted';
}

test('with nothing set, every default', () => {
  expect(load({})).toEqual({
    production: false,
    host: '127.0.0.1',
    port: 3000,
    database: { kind: 'sqlite', file: path.resolve(CWD, 'data/atoll.db'), url: `file:${path.resolve(CWD, 'data/atoll.db')}` },
    agentsDir: null,
    agentCacheDir: null,
    cells: 2,
    workersPerCell: 2,
    runTimeoutMs: 30_000,
    runMemoryMb: 128,
    cellMemoryMb: 512 + (1 + BURST_WORKERS_PER_WORKER) * 2 * 128,
    // 64 of the cell's own, and 256 + 16 for each of the 9 workers its pool may hold (2 × 4 + 1 spare), twice.
    cellMaxDescriptors: 4960,
    maxRunsPerWorker: 0,
    workerDbWarmup: 'lazy',
    workerLockdown: true,
    workerReuse: 'same_user',
    agentEgress: { mode: 'public', allow: [] },
    cpuDemoteAfterMs: 500,
    cellSandbox: 'permission',
    cellUidBase: 61_000,
    scratchRoot: null,
    warmSpareWorkers: 1,
    dbSynchronous: 'normal',
    dbPoolSize: 4,
    dbStartupWaitMs: 60000,
    maxRunAttempts: 3,
    cluster: null,
    nodeId: expect.stringMatching(new RegExp(`-${process.pid}$`)),
    nodeLeaseMs: 10000,
    quarantineCells: 2,
    cellKillerQuarantineMs: 600_000,
    cellRecycleRssRatio: 1.3,
    cellSilenceTimeoutMs: 30_000,
    cancelGraceMs: 500,
    shutdownGraceMs: 10_000,
    maxQueuedRuns: 1000,
    maxInputBytes: 65_536,
    userMaxConcurrentRuns: 3,
    userMaxQueuedRuns: 100,
    userMaxStoredBytes: 1_073_741_824,
    rateLimits: { user: { rate: 20, burst: 40 }, ip: { rate: 50, burst: 100 }, authFailures: { rate: 30 / 60, burst: 10 } },
    maxConnectionsPerUser: 20,
    maxConnectionsPerIp: 100,
    trustProxy: false,
    ipv6BudgetPrefix: 64,
    socketMaxBufferedPackets: 1000,
    socketMaxBufferedBytes: 4_194_304,
    socketStallTimeoutMs: 30_000,
    httpStallTimeoutMs: 30_000,
    tokenExpiryWarningMs: 60_000,
    limits: { maxEventsPerRun: 10_000, maxEventBytes: 65_536, maxRunEventBytes: 16_777_216, maxResultBytes: 1_048_576, scratchBytes: 268_435_456, scratchEntries: 10_000, openFiles: 256, logBytesPerSecond: 65_536 },
    jwtSecret: null,
    maxTokenLifetimeS: 86_400,
    corsOrigins: [],
    devLogin: false,
    metricsToken: null,
    enableChaosAgents: false,
    logLevel: 'info',
    alertActiveContexts: 10,
    agentSettings: { llm: { baseUrl: null, model: null, maxContextMessages: 20, toolTimeoutMs: 10_000 } },
    llmApiKey: null,
    llmOperations: [
      { method: 'POST', path: ['chat', 'completions'] },
      { method: 'POST', path: ['completions'] },
      { method: 'POST', path: ['embeddings'] },
      { method: 'POST', path: ['responses'] },
      { method: 'GET', path: ['models'] },
      { method: 'GET', path: ['models', '*'] },
    ],
    tracing: null,
  });
});

test('every variable set, each lands in its field', () => {
  const c = load({
    NODE_ENV: 'Test',
    HOST: '0.0.0.0',
    PORT: '8080',
    DATABASE_URL: 'file:/var/lib/atoll.db',
    AGENTS_DIR: 'agents',
    AGENT_CACHE_DIR: 'agent-cache',
    CELLS: '4',
    THREADS_PER_CELL: '3',
    RUN_TIMEOUT_MS: '1000',
    RUN_MEMORY_MB: '100',
    CELL_MEMORY_MB: '2048',
    CELL_MAX_DESCRIPTORS: '3000',
    MAX_RUNS_PER_WORKER: '5',
    WORKER_DB_WARMUP: 'eager',
    THREAD_LOCKDOWN: 'false',
    THREAD_REUSE: 'any',
    AGENT_EGRESS: 'none',
    AGENT_EGRESS_ALLOW: ' 10.0.5.20 ,10.1.0.0/16,, fd00:1::/64',
    CPU_DEMOTE_AFTER_MS: '0',
    CELL_SANDBOX: 'off',
    CELL_UID_BASE: '0',
    SCRATCH_DIR: '/tmp/scratch',
    WARM_SPARE_THREADS: '0',
    DB_SYNCHRONOUS: 'full',
    DB_POOL_SIZE: '9',
    DB_STARTUP_WAIT_MS: '1500',
    NODE_ID: 'node-7',
    NODE_LEASE_MS: '2500',
    REDIS_KEY_PREFIX: 'mine:',
    MAX_RUN_ATTEMPTS: '1',
    QUARANTINE_CELLS: '7',
    CELL_KILLER_QUARANTINE_MS: '0',
    CELL_RECYCLE_RSS_RATIO: '0',
    CELL_SILENCE_TIMEOUT_MS: '4000',
    CANCEL_GRACE_MS: '1',
    SHUTDOWN_GRACE_MS: '2',
    MAX_QUEUED_RUNS: '3',
    USER_MAX_CONCURRENT_RUNS: '4',
    USER_MAX_QUEUED_RUNS: '5',
    USER_MAX_STORED_BYTES: '123456',
    RATE_LIMIT_USER_PER_SEC: '6',
    RATE_LIMIT_USER_BURST: '7',
    RATE_LIMIT_IP_PER_SEC: '8',
    RATE_LIMIT_IP_BURST: '9',
    RATE_LIMIT_AUTH_FAILURES_PER_MIN: '120',
    RATE_LIMIT_AUTH_FAILURES_BURST: '11',
    MAX_CONNECTIONS_PER_USER: '12',
    MAX_CONNECTIONS_PER_IP: '13',
    TRUST_PROXY: '10.0.0.0/8, 172.16.0.0/12',
    IPV6_BUDGET_PREFIX: '48',
    SOCKET_MAX_BUFFERED_PACKETS: '14',
    SOCKET_MAX_BUFFERED_BYTES: '70000',
    SOCKET_STALL_TIMEOUT_MS: '1500',
    HTTP_STALL_TIMEOUT_MS: '2500',
    TOKEN_EXPIRY_WARNING_MS: '16',
    MAX_INPUT_BYTES: '17',
    MAX_EVENTS_PER_RUN: '18',
    MAX_EVENT_BYTES: '190',
    MAX_RUN_EVENT_BYTES: '1900',
    MAX_RESULT_BYTES: '200',
    RUN_SCRATCH_MB: '3',
    RUN_SCRATCH_FILES: '21',
    RUN_OPEN_FILES: '22',
    RUN_LOG_BYTES_PER_S: '23',
    AUTH_JWT_SECRET: 'a-secret-of-16-chars',
    AUTH_MAX_TOKEN_LIFETIME_S: '61',
    METRICS_TOKEN: 'a-metrics-token-of-24ch',
    CORS_ORIGINS: ' https://chat.example.com , http://localhost:5173,,',
    AUTH_DEV_LOGIN: '1',
    ENABLE_CHAOS_AGENTS: 'true',
    LLM_BASE_URL: 'http://127.0.0.1:11434/v1',
    LLM_API_KEY: 'sk-1',
    LLM_MODEL: 'llama3',
    LLM_OPERATIONS: 'any',
    LLM_MAX_CONTEXT_MESSAGES: '0',
    TOOL_TIMEOUT_MS: '10',
    LOG_LEVEL: 'debug',
    ALERT_ACTIVE_CONTEXTS: '22',
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/custom/traces',
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
    OTEL_SERVICE_NAME: 'atoll-eu',
    OTEL_BSP_SCHEDULE_DELAY: '250',
    OTEL_SDK_DISABLED: 'false',
  });
  expect(c).toEqual({
    production: false,
    host: '0.0.0.0',
    port: 8080,
    database: { kind: 'sqlite', file: '/var/lib/atoll.db', url: 'file:/var/lib/atoll.db' },
    agentsDir: path.resolve(CWD, 'agents'),
    agentCacheDir: path.resolve(CWD, 'agent-cache'),
    cells: 4,
    workersPerCell: 3,
    runTimeoutMs: 1000,
    runMemoryMb: 100,
    cellMemoryMb: 2048,
    cellMaxDescriptors: 3000,
    maxRunsPerWorker: 5,
    workerDbWarmup: 'eager',
    workerLockdown: false,
    workerReuse: 'any',
    agentEgress: { mode: 'none', allow: ['10.0.5.20/32', '10.1.0.0/16', 'fd00:1::/64'] },
    cpuDemoteAfterMs: 0,
    cellSandbox: 'off',
    cellUidBase: 0,
    scratchRoot: '/tmp/scratch',
    warmSpareWorkers: 0,
    dbSynchronous: 'full',
    dbPoolSize: 9,
    dbStartupWaitMs: 1500,
    maxRunAttempts: 1,
    // REDIS_URL needs PostgreSQL: tested on its own below.
    cluster: null,
    nodeId: 'node-7',
    nodeLeaseMs: 2500,
    quarantineCells: 7,
    cellKillerQuarantineMs: 0,
    cellRecycleRssRatio: 0,
    cellSilenceTimeoutMs: 4000,
    cancelGraceMs: 1,
    shutdownGraceMs: 2,
    maxQueuedRuns: 3,
    maxInputBytes: 17,
    userMaxConcurrentRuns: 4,
    userMaxQueuedRuns: 5,
    userMaxStoredBytes: 123_456,
    rateLimits: { user: { rate: 6, burst: 7 }, ip: { rate: 8, burst: 9 }, authFailures: { rate: 2, burst: 11 } },
    maxConnectionsPerUser: 12,
    maxConnectionsPerIp: 13,
    trustProxy: ['10.0.0.0/8', '172.16.0.0/12'],
    ipv6BudgetPrefix: 48,
    socketMaxBufferedPackets: 14,
    socketMaxBufferedBytes: 70_000,
    socketStallTimeoutMs: 1500,
    httpStallTimeoutMs: 2500,
    tokenExpiryWarningMs: 16,
    limits: { maxEventsPerRun: 18, maxEventBytes: 190, maxRunEventBytes: 1900, maxResultBytes: 200, scratchBytes: 3_145_728, scratchEntries: 21, openFiles: 22, logBytesPerSecond: 23 },
    jwtSecret: 'a-secret-of-16-chars',
    maxTokenLifetimeS: 61,
    corsOrigins: ['https://chat.example.com', 'http://localhost:5173'],
    devLogin: true,
    metricsToken: 'a-metrics-token-of-24ch',
    enableChaosAgents: true,
    logLevel: 'debug',
    alertActiveContexts: 22,
    agentSettings: { llm: { baseUrl: 'http://127.0.0.1:11434/v1', model: 'llama3', maxContextMessages: 0, toolTimeoutMs: 10 } },
    llmApiKey: 'sk-1',
    llmOperations: 'any',
    tracing: { url: 'http://collector:4318/custom/traces', protocol: 'http/json', serviceName: 'atoll-eu', scheduledDelayMs: 250 },
  });
});

test("a cell's descriptor ceiling follows its workers and their open files; none without a budget", () => {
  expect(load({ THREADS_PER_CELL: '3', WARM_SPARE_THREADS: '2', RUN_OPEN_FILES: '100' }).cellMaxDescriptors).toBe(64 + 2 * (3 * (1 + BURST_WORKERS_PER_WORKER) + 2) * (100 + 16));
  expect(load({ RUN_OPEN_FILES: '0' }).cellMaxDescriptors).toBe(0);
});

test('the cell memory limit follows the threads and their heap budget; quarantine cells follow the threads', () => {
  const c = load({ THREADS_PER_CELL: '3', RUN_MEMORY_MB: '100' });
  expect(c.cellMemoryMb).toBe(512 + (1 + BURST_WORKERS_PER_WORKER) * 3 * 100);
  expect(c.quarantineCells).toBe(3);
});

test('an empty variable counts as unset', () => {
  expect(load({ PORT: '', NODE_ENV: '', THREAD_LOCKDOWN: '' })).toMatchObject({ port: 3000, production: false, workerLockdown: true });
});

test('NODE_ENV is case-insensitive and only known values pass', () => {
  expect(load({ NODE_ENV: 'DEVELOPMENT' }).production).toBe(false);
  expect(load({ NODE_ENV: 'test' }).production).toBe(false);
  expect(load({ NODE_ENV: 'Production', AUTH_JWT_SECRET: 'x'.repeat(16) }).production).toBe(true);
  expect(refusal({ NODE_ENV: 'prod' })).toBe('invalid configuration:\n  NODE_ENV: must be development, production or test (got "prod")');
});

test('booleans take 0, 1, true and false only', () => {
  expect(load({ AUTH_DEV_LOGIN: '1' }).devLogin).toBe(true);
  expect(load({ AUTH_DEV_LOGIN: 'true' }).devLogin).toBe(true);
  expect(load({ AUTH_DEV_LOGIN: '0' }).devLogin).toBe(false);
  expect(load({ AUTH_DEV_LOGIN: 'false' }).devLogin).toBe(false);
  expect(load({ THREAD_LOCKDOWN: '0' }).workerLockdown).toBe(false);
  expect(refusal({ AUTH_DEV_LOGIN: 'yes' })).toMatch(/^invalid configuration:\n {2}AUTH_DEV_LOGIN: .* \(got "yes"\)$/);
});

test('enumerations take each of their values and nothing else', () => {
  for (const level of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) expect(load({ LOG_LEVEL: level }).logLevel).toBe(level);
  expect(load({ WORKER_DB_WARMUP: 'lazy' }).workerDbWarmup).toBe('lazy');
  expect(load({ THREAD_REUSE: 'same_user' }).workerReuse).toBe('same_user');
  expect(load({ CELL_SANDBOX: 'permission' }).cellSandbox).toBe('permission');
  expect(load({ DB_SYNCHRONOUS: 'normal' }).dbSynchronous).toBe('normal');
  for (const [name, bad] of [['LOG_LEVEL', 'verbose'], ['WORKER_DB_WARMUP', 'now'], ['THREAD_REUSE', 'never'], ['CELL_SANDBOX', 'on'], ['DB_SYNCHRONOUS', 'off']]) {
    expect(refusal({ [name]: bad })).toContain(`  ${name}: `);
  }
});

test('numbers are integers within their bounds', () => {
  expect(load({ PORT: '0' }).port).toBe(0);
  expect(load({ PORT: '65535' }).port).toBe(65535);
  expect(refusal({ PORT: '65536' })).toContain('  PORT: ');
  expect(refusal({ PORT: '-1' })).toContain('  PORT: ');
  expect(refusal({ PORT: '80.5' })).toContain('  PORT: ');
  expect(refusal({ PORT: 'http' })).toContain('  PORT: ');
  expect(refusal({ CELLS: '0' })).toContain('  CELLS: ');
  expect(load({ CELL_RECYCLE_RSS_RATIO: '2.5' }).cellRecycleRssRatio).toBe(2.5);
  expect(refusal({ CELL_RECYCLE_RSS_RATIO: '-0.1' })).toContain('  CELL_RECYCLE_RSS_RATIO: ');
  // Under 2 s a busy machine's late stats would read as silence.
  expect(refusal({ CELL_SILENCE_TIMEOUT_MS: '1999' })).toContain('  CELL_SILENCE_TIMEOUT_MS: ');
  expect(load({ CELL_SILENCE_TIMEOUT_MS: '2000' }).cellSilenceTimeoutMs).toBe(2000);
});

const URL_HINT = 'must be a SQLite URL like file:./data/atoll.db or a PostgreSQL URL like postgresql://user:password@host:5432/atoll';

test('DATABASE_URL is a SQLite file URL, resolved against cwd, or a PostgreSQL URL naming its database', () => {
  expect(load({ DATABASE_URL: 'file:db/x.db' }).database).toEqual({ kind: 'sqlite', file: path.resolve(CWD, 'db/x.db'), url: `file:${path.resolve(CWD, 'db/x.db')}` });
  expect(load({ DATABASE_URL: 'postgresql://atoll:s3cret@db.internal:5432/atoll_prod?sslmode=require' }).database).toEqual({
    kind: 'postgresql',
    url: 'postgresql://atoll:s3cret@db.internal:5432/atoll_prod?sslmode=require',
    masked: 'postgresql://atoll:***@db.internal:5432/atoll_prod?sslmode=require',
    database: 'atoll_prod',
    stateDir: path.resolve(CWD, 'data'),
  });
  expect(load({ DATABASE_URL: 'postgres://db/atoll' }).database).toMatchObject({ kind: 'postgresql', database: 'atoll', masked: 'postgres://db/atoll' });
  expect(refusal({ DATABASE_URL: 'file:' })).toBe(`invalid configuration:\n  DATABASE_URL: ${URL_HINT} (got "file:")`);
  expect(refusal({ DATABASE_URL: 'sqlite:file:x.db' })).toContain(`DATABASE_URL: ${URL_HINT}`);
  // A PostgreSQL URL must name its database.
  expect(refusal({ DATABASE_URL: 'postgresql://db:5432' })).toContain(`DATABASE_URL: ${URL_HINT}`);
  expect(refusal({ DATABASE_URL: 'postgresql://db:5432/' })).toContain(`DATABASE_URL: ${URL_HINT}`);
  expect(refusal({ DATABASE_URL: 'mysql://db/atoll' })).toContain(`DATABASE_URL: ${URL_HINT}`);
});

test('a URL with credentials is shown masked; secrets are never shown', () => {
  expect(refusal({ DATABASE_URL: 'postgres://admin:hunter2@db:5432' })).toBe(`invalid configuration:\n  DATABASE_URL: ${URL_HINT} (got "postgres://***@db:5432")`);
  expect(refusal({ AUTH_JWT_SECRET: 'short-secret' })).toBe('invalid configuration:\n  AUTH_JWT_SECRET: must be at least 16 characters (value hidden, 12 characters)');
  expect(refusal({ METRICS_TOKEN: 'short-token' })).toBe('invalid configuration:\n  METRICS_TOKEN: must be at least 16 characters (value hidden, 11 characters)');
  expect(refusal({ METRICS_TOKEN: 'a metrics token with spaces' })).toBe(
    'invalid configuration:\n  METRICS_TOKEN: must be printable ASCII without spaces (it travels in an Authorization header) (value hidden, 27 characters)',
  );
  const llm = refusal({ LLM_BASE_URL: 'not a url', LLM_API_KEY: 'sk-very-secret' });
  expect(llm).toBe('invalid configuration:\n  LLM_BASE_URL: must be an http(s) URL like http://127.0.0.1:11434/v1 (got "not a url")');
  expect(refusal({ LLM_MODEL: '', LLM_MAX_CONTEXT_MESSAGES: '1001' })).toContain('LLM_MAX_CONTEXT_MESSAGES');
  expect(refusal({ LLM_OPERATIONS: 'DELETE files' })).toMatch(/LLM_OPERATIONS.*"DELETE files" is not "GET path" or "POST path"/);
});

test('several problems are listed one per line', () => {
  expect(refusal({ PORT: 'x', CELLS: '0' }).split('\n')).toEqual(['invalid configuration:', expect.stringMatching(/^ {2}PORT: .*\(got "x"\)$/), expect.stringMatching(/^ {2}CELLS: .*\(got "0"\)$/)]);
});

test('CORS_ORIGINS: a comma-separated list of bare origins', () => {
  expect(load({ CORS_ORIGINS: 'https://a.example' }).corsOrigins).toEqual(['https://a.example']);
  for (const bad of ['https://a.example/', 'https://a.example/app', 'ftp://a.example', 'a.example', 'https://a example', 'xhttps://a.example', 'https://']) {
    expect(refusal({ CORS_ORIGINS: `http://ok.example,${bad}` })).toBe(
      `invalid configuration:\n  CORS_ORIGINS.1: each must be an origin like https://chat.example.com (scheme, host, optional port; no path) (got ${JSON.stringify(`http://ok.example,${bad}`)})`,
    );
  }
});

test('AGENT_EGRESS and AGENT_EGRESS_ALLOW: a mode, and addresses or subnets kept as CIDRs; anything else refused by name', () => {
  expect(['public', 'none', 'any'].map((m) => load({ AGENT_EGRESS: m }).agentEgress.mode)).toEqual(['public', 'none', 'any']);
  expect(load({ AGENT_EGRESS_ALLOW: '::ffff:10.0.0.1,2001:db8::1' }).agentEgress.allow).toEqual(['::ffff:a00:1/128', '2001:db8::1/128']);
  expect(refusal({ AGENT_EGRESS: 'private' })).toMatch(/^invalid configuration:\n {2}AGENT_EGRESS: must be public \(the default\), none or any/);
  for (const bad of ['10.0.0.0/33', 'localhost', '10.0.0.1:443', 'fd00::/129', '10.0.0']) {
    expect(refusal({ AGENT_EGRESS_ALLOW: `10.0.0.1,${bad}` })).toMatch(new RegExp(`AGENT_EGRESS_ALLOW: "${bad.replace(/[./]/g, '\\$&')}" is not an IP address or subnet`));
  }
});

test('TRUST_PROXY: true, false, a hop count, or proxy addresses and subnets, as express reads them', () => {
  expect(['true', 'TRUE', 'false', '0', '1', '2', 'loopback', 'loopback, uniquelocal', '10.0.0.1,::1', 'fd00::/8'].map((v) => load({ TRUST_PROXY: v }).trustProxy)).toEqual([
    true,
    true,
    false,
    false,
    1,
    2,
    ['loopback'],
    ['loopback', 'uniquelocal'],
    ['10.0.0.1', '::1'],
    ['fd00::/8'],
  ]);
  const hint = 'must be true, false, a number of proxy hops, or comma-separated proxy addresses/subnets (loopback, linklocal, uniquelocal, 10.0.0.0/8, ::1…)';
  expect(refusal({ TRUST_PROXY: 'yes' })).toBe(`invalid configuration:\n  TRUST_PROXY: ${hint}: invalid IP address: yes (got "yes")`);
  expect(refusal({ TRUST_PROXY: '10.0.0.0/33' })).toBe(`invalid configuration:\n  TRUST_PROXY: ${hint}: invalid range on address: 10.0.0.0/33 (got "10.0.0.0/33")`);
  expect(refusal({ TRUST_PROXY: '10.0.0.1,,10.0.0.2' })).toContain('TRUST_PROXY: must be true, false');
  expect(refusal({ TRUST_PROXY: '-1' })).toContain('TRUST_PROXY: must be true, false');
});

test('production refuses dev login and requires a JWT secret', () => {
  expect(refusal({ NODE_ENV: 'production', AUTH_DEV_LOGIN: '1', AUTH_JWT_SECRET: 'x'.repeat(16) })).toBe('invalid configuration:\n  AUTH_DEV_LOGIN: refused when NODE_ENV=production');
  expect(refusal({ NODE_ENV: 'production' })).toBe('invalid configuration:\n  AUTH_JWT_SECRET: required when NODE_ENV=production');
  expect(load({ NODE_ENV: 'production', AUTH_DEV_LOGIN: '0', AUTH_JWT_SECRET: 'x'.repeat(16) }).devLogin).toBe(false);
  // Development needs neither.
  expect(load({ AUTH_DEV_LOGIN: '1' }).jwtSecret).toBeNull();
});

test('the configuration is frozen, nested parts too', () => {
  const c = load({});
  expect(Object.isFrozen(c)).toBe(true);
  expect(Object.isFrozen(c.rateLimits.user)).toBe(true);
  expect(Object.isFrozen(c.agentSettings.llm)).toBe(true);
  expect(Object.isFrozen(c.corsOrigins)).toBe(true);
});

test('ENV_VARS lists every variable the schema reads', () => {
  expect(ENV_VARS).toContain('NODE_ENV');
  expect(ENV_VARS).toContain('ALERT_ACTIVE_CONTEXTS');
  expect(ENV_VARS).toContain('TRUST_PROXY');
  expect(ENV_VARS).toContain('AGENT_CACHE_DIR');
  expect(ENV_VARS).toContain('HTTP_STALL_TIMEOUT_MS');
  expect(ENV_VARS).toContain('METRICS_TOKEN');
  expect(ENV_VARS).toContain('CELL_KILLER_QUARANTINE_MS');
  expect(ENV_VARS).toContain('LLM_OPERATIONS');
  expect(ENV_VARS).toContain('RUN_SCRATCH_MB');
  expect(ENV_VARS).toContain('RUN_SCRATCH_FILES');
  expect(ENV_VARS).toContain('RUN_OPEN_FILES');
  expect(ENV_VARS).toContain('RUN_LOG_BYTES_PER_S');
  expect(ENV_VARS).toContain('USER_MAX_STORED_BYTES');
  expect(ENV_VARS).toHaveLength(86);
});

test('several nodes: REDIS_URL needs PostgreSQL and a shared token secret; NODE_ID and NODE_LEASE_MS are checked', () => {
  const pg = 'postgresql://u:p@db:5432/atoll';
  const c = load({ REDIS_URL: 'redis://:secret@cache:6379', DATABASE_URL: pg, AUTH_JWT_SECRET: 'x'.repeat(16), NODE_ID: 'n1', NODE_LEASE_MS: '3000' });
  expect(c.cluster).toEqual({ redisUrl: 'redis://:secret@cache:6379', keyPrefix: 'atoll:' });
  expect([c.nodeId, c.nodeLeaseMs]).toEqual(['n1', 3000]);
  expect(() => load({ REDIS_URL: 'redis://cache:6379', AUTH_JWT_SECRET: 'x'.repeat(16) })).toThrow(/REDIS_URL: several nodes need a shared database/);
  expect(() => load({ REDIS_URL: 'redis://cache:6379', DATABASE_URL: pg })).toThrow(/AUTH_JWT_SECRET: required with REDIS_URL/);
  expect(() => load({ REDIS_URL: 'http://cache', DATABASE_URL: pg, AUTH_JWT_SECRET: 'x'.repeat(16) })).toThrow(/REDIS_URL: must be a Redis URL/);
  expect(() => load({ NODE_ID: 'a b' })).toThrow(/NODE_ID/);
  expect(() => load({ NODE_LEASE_MS: '10' })).toThrow(/NODE_LEASE_MS/);
  // The Redis password never reaches the message.
  let message = '';
  try {
    load({ REDIS_URL: 'redis://:hunter2@cache:6379 x', DATABASE_URL: pg, AUTH_JWT_SECRET: 'x'.repeat(16) });
  } catch (err) {
    message = (err as Error).message;
  }
  expect(message).toMatch(/REDIS_URL/);
  expect(message).not.toContain('hunter2');
});

test('tracing: on with an OTLP endpoint, /v1/traces added to the base URL; protobuf by default; gRPC refused; OTEL_SDK_DISABLED turns it off', () => {
  expect(load({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).tracing).toEqual({ url: 'http://collector:4318/v1/traces', protocol: 'http/protobuf', serviceName: 'atoll', scheduledDelayMs: 5000 });
  expect(load({ OTEL_EXPORTER_OTLP_ENDPOINT: 'https://otel.example.com/otlp', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }).tracing).toMatchObject({ url: 'https://otel.example.com/otlp/v1/traces', protocol: 'http/json' });
  expect(load({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' }).tracing?.url).toBe('http://collector:4318/v1/traces');
  expect(load({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: '1' }).tracing).toBeNull();
  expect(load({ OTEL_EXPORTER_OTLP_ENDPOINT: '' }).tracing).toBeNull();
  expect(refusal({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).toMatch(/OTEL_EXPORTER_OTLP_PROTOCOL: must be http\/protobuf or http\/json \(gRPC is not supported/);
  expect(refusal({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' })).toMatch(/OTEL_EXPORTER_OTLP_ENDPOINT: must be the collector base URL/);
});
