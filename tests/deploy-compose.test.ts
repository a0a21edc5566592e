/**
 * deploy/ checked against the code, with no Docker engine: deploy/compose.yaml's Atoll nodes get only variables
 * Atoll reads, which its own config loader accepts as a cluster (PostgreSQL, Redis, one secret, distinct
 * NODE_IDs, otherwise the same); HAProxy, Prometheus and the health checks reach each node on its PORT and ask
 * /readyz; Prometheus loads the shipped rules and Grafana the shipped dashboard, through the compose file's own
 * mounts; the image carries PostgreSQL's migrations. promtool and haproxy (Debian's `prometheus` and `haproxy`
 * packages, which .ci/run installs) check the configurations and run the rules' unit tests.
 * Each check is a function returning what is wrong, shown to fail on a broken copy.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { ROOT } from './helpers/server';
import { buildOf, durationMs, environmentOf, hostPathOf, parseEnvFile, publishedPorts, readCompose, runtimeStage, type ComposeFile, type Service } from './helpers/compose-file';
import { ENV_VARS, loadConfig, type Config } from '../server/config';
import { opsRoutes } from '../server/http/routes/ops';
import { listMigrations, migrationsFolder } from '../server/store/migrations';

const DEPLOY = path.join(ROOT, 'deploy');
const COMPOSE = path.join(DEPLOY, 'compose.yaml');
const ENV_EXAMPLE = path.join(DEPLOY, '.env.example');
const RULES = path.join(ROOT, 'ops/prometheus/atoll-rules.yml');
const RULES_TESTS = path.join(ROOT, 'ops/prometheus/atoll-rules.test.yml');
const DASHBOARD = path.join(ROOT, 'ops/grafana/atoll-dashboard.json');

/** Values for the .env file's secrets, as a user would fill them in (deploy/.env.example says how). */
const SECRETS: Record<string, string> = {
  POSTGRES_PASSWORD: 'f3a9c1d07be2a4c58e61d2f0',
  REDIS_PASSWORD: '0b7e4f2a9c1d58e3a6f0c2d4',
  AUTH_JWT_SECRET: '5d1e0c7a9b3f48e2a6c4d8b0f2e1a3c5',
  GRAFANA_ADMIN_PASSWORD: 'grafana-admin-pw',
};

const load = (vars = SECRETS) => readCompose(COMPOSE, vars);
/** A deep copy of the compose file to break on purpose. */
const broken = (edit: (c: ComposeFile) => void): ComposeFile => {
  const copy = structuredClone(load());
  edit(copy);
  return copy;
};

/** The services built from the repository's Dockerfile: the Atoll nodes. */
function atollNodes(compose: ComposeFile): [string, Service][] {
  return Object.entries(compose.services).filter(([, s]) => buildOf(compose, s)?.dockerfile === path.join(ROOT, 'Dockerfile'));
}

/** A node's environment as the container sees it: the image's ENV, then the compose file's. */
function nodeEnv(compose: ComposeFile, service: Service): Record<string, string> {
  return { ...runtimeStage(buildOf(compose, service)!.dockerfile).env, ...environmentOf(service) };
}

interface NodeView {
  name: string;
  env: Record<string, string>;
  config: Config;
}

/** Each node's configuration through Atoll's own loader, and what is wrong with the set. */
function checkNodes(compose: ComposeFile): { nodes: NodeView[]; problems: string[] } {
  const problems: string[] = [];
  const nodes: NodeView[] = [];
  const entries = atollNodes(compose);
  if (entries.length !== 3) problems.push(`expected three Atoll nodes built from the Dockerfile, found ${entries.map(([n]) => n).join(', ') || 'none'}`);
  for (const [name, service] of entries) {
    const env = nodeEnv(compose, service);
    for (const key of Object.keys(env)) if (!ENV_VARS.includes(key)) problems.push(`${name}: ${key} is not a variable Atoll reads (server/config.ts)`);
    try {
      const config = loadConfig(env, '/app');
      nodes.push({ name, env, config });
      if (config.database.kind !== 'postgresql') problems.push(`${name}: DATABASE_URL is not PostgreSQL`);
      if (!config.cluster) problems.push(`${name}: REDIS_URL is not set: the node would run alone`);
      if (!config.production) problems.push(`${name}: NODE_ENV is not production`);
      if (!env.NODE_ID) problems.push(`${name}: NODE_ID is not set (the default, host name and pid, changes at every restart)`);
    } catch (err) {
      problems.push(`${name}: ${(err as Error).message}`);
    }
    if (service.command || service.entrypoint) problems.push(`${name}: overrides the image's command (every node runs the same one)`);
    if ((service.ports ?? []).length > 0) problems.push(`${name}: publishes ports: clients reach the nodes through the load balancer only`);
  }
  const ids = nodes.map((n) => n.config.nodeId);
  if (new Set(ids).size !== ids.length) problems.push(`NODE_IDs are not distinct: ${ids.join(', ')}`);
  const withoutId = nodes.map((n) => JSON.stringify(Object.entries(n.env).filter(([k]) => k !== 'NODE_ID').sort()));
  if (new Set(withoutId).size > 1) problems.push('the nodes differ in more than NODE_ID');
  return { nodes, problems };
}

/** Each node's health check asks /readyz on its own PORT; it waits for the database and Redis; it drains in time. */
function checkNodeServices(compose: ComposeFile, nodes: NodeView[]): string[] {
  const problems: string[] = [];
  for (const { name, config } of nodes) {
    const service = compose.services[name];
    const test = [service.healthcheck?.test ?? []].flat().join(' ');
    const probe = /http:\/\/(?:127\.0\.0\.1|localhost):(\d+)(\/\w+)/.exec(test);
    if (!probe) problems.push(`${name}: no HTTP health check`);
    else {
      if (Number(probe[1]) !== config.port) problems.push(`${name}: health check on port ${probe[1]}, PORT is ${config.port}`);
      if (probe[2] !== '/readyz') problems.push(`${name}: health check on ${probe[2]}, not /readyz`);
    }
    if (!(service.expose ?? []).map(String).includes(String(config.port))) problems.push(`${name}: does not expose PORT ${config.port}`);
    const grace = durationMs(service.stop_grace_period ?? '10s');
    // After the grace: the cancel grace, then ~1.5 s for the sockets' last notice and closing (server/atoll.ts).
    if (grace <= config.shutdownGraceMs + config.cancelGraceMs + 1500) problems.push(`${name}: stop_grace_period ${grace} ms cuts SHUTDOWN_GRACE_MS short`);
    const deps = service.depends_on ?? {};
    const database = new URL(config.database.url);
    const redis = new URL(config.cluster!.redisUrl);
    for (const host of [database.hostname, redis.hostname]) {
      const condition = Array.isArray(deps) ? undefined : deps[host]?.condition;
      if (condition !== 'service_healthy') problems.push(`${name}: does not wait for ${host} to be healthy`);
    }
  }
  return problems;
}

/** DATABASE_URL and REDIS_URL name the compose file's PostgreSQL 15 and Redis 7, with its credentials. */
function checkBackingServices(compose: ComposeFile, nodes: NodeView[]): string[] {
  const problems: string[] = [];
  for (const { name, config } of nodes) {
    const db = new URL(config.database.url);
    const pg = compose.services[db.hostname];
    if (!pg) problems.push(`${name}: DATABASE_URL names ${db.hostname}, which is no service`);
    else {
      const env = environmentOf(pg);
      if (!/^postgres:15(\b|$)/.test(pg.image ?? '')) problems.push(`${db.hostname}: image ${pg.image} is not PostgreSQL 15`);
      if ((db.port || '5432') !== '5432') problems.push(`${name}: DATABASE_URL port ${db.port}, PostgreSQL listens on 5432`);
      if (decodeURIComponent(db.username) !== env.POSTGRES_USER) problems.push(`${name}: DATABASE_URL user is not POSTGRES_USER`);
      if (decodeURIComponent(db.password) !== env.POSTGRES_PASSWORD) problems.push(`${name}: DATABASE_URL password is not POSTGRES_PASSWORD`);
      if (db.pathname.slice(1) !== env.POSTGRES_DB) problems.push(`${name}: DATABASE_URL database is not POSTGRES_DB`);
    }
    const redis = new URL(config.cluster!.redisUrl);
    const rs = compose.services[redis.hostname];
    if (!rs) problems.push(`${name}: REDIS_URL names ${redis.hostname}, which is no service`);
    else {
      if (!/^redis:7(\b|$)/.test(rs.image ?? '')) problems.push(`${redis.hostname}: image ${rs.image} is not Redis 7`);
      if ((redis.port || '6379') !== '6379') problems.push(`${name}: REDIS_URL port ${redis.port}, Redis listens on 6379`);
      // Cells (agent code) share the nodes' network: Redis must ask for the password REDIS_URL carries.
      const command = (rs.command ?? []) as string[];
      const required = command[command.indexOf('--requirepass') + 1];
      if (!command.includes('--requirepass') || !required) problems.push(`${redis.hostname}: requires no password (--requirepass)`);
      else if (decodeURIComponent(redis.password) !== required) problems.push(`${name}: REDIS_URL password is not the one ${redis.hostname} requires`);
    }
  }
  return problems;
}

/** The service that mounts a host file at some path, and that host file. */
function mountedFile(compose: ComposeFile, hostFile: string): { name: string; service: Service; target: string } | null {
  for (const [name, service] of Object.entries(compose.services)) {
    for (const volume of service.volumes ?? []) {
      const [source, target] = volume.split(':');
      if ((source.startsWith('.') || source.startsWith('/')) && path.resolve(compose.dir, source) === hostFile) return { name, service, target };
    }
  }
  return null;
}

interface HaproxyBackend {
  lines: string[];
  servers: { name: string; host: string; port: number; cookie: string | null; check: boolean }[];
}

/** haproxy.cfg's sections (`frontend x`, `backend x`, …) with their lines, comments dropped. */
function haproxySections(text: string): Map<string, string[]> {
  const sections = new Map<string, string[]>();
  let current: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trimEnd();
    if (!line.trim()) continue;
    if (/^\S/.test(line)) sections.set(line.trim(), (current = []));
    else current.push(line.trim());
  }
  return sections;
}

function haproxyBackend(lines: string[]): HaproxyBackend {
  const defaults = lines.find((l) => l.startsWith('default-server')) ?? '';
  const servers = lines
    .filter((l) => l.startsWith('server '))
    .map((l) => {
      const [, name, address, ...options] = l.split(/\s+/);
      const [host, port] = address.split(':');
      const cookie = options.indexOf('cookie');
      return { name, host, port: Number(port), cookie: cookie >= 0 ? options[cookie + 1] : null, check: options.includes('check') || /\bcheck\b/.test(defaults) };
    });
  return { lines, servers };
}

/**
 * HAProxy: one server per node on its PORT, health-checked on /readyz, sticky by cookie, WebSocket-ready, published;
 * it adds the client's address to X-Forwarded-For, and each node trusts exactly that one hop (TRUST_PROXY=1).
 */
function checkLoadBalancer(compose: ComposeFile, nodes: NodeView[], cfgText: string): string[] {
  const problems: string[] = [];
  const sections = haproxySections(cfgText);
  const backendName = [...sections.keys()].find((k) => k.startsWith('backend '));
  if (!backendName) return ['haproxy.cfg has no backend'];
  const backend = haproxyBackend(sections.get(backendName)!);
  const byHost = new Map(backend.servers.map((s) => [s.host, s]));
  for (const { name, config } of nodes) {
    const server = byHost.get(name);
    if (!server) problems.push(`${backendName}: no server for ${name}`);
    else if (server.port !== config.port) problems.push(`${backendName}: ${name} on port ${server.port}, PORT is ${config.port}`);
    else if (!server.check) problems.push(`${backendName}: ${name} is not health-checked`);
  }
  for (const s of backend.servers) if (!nodes.some((n) => n.name === s.host)) problems.push(`${backendName}: server ${s.host} is no Atoll node`);
  const cookies = backend.servers.map((s) => s.cookie);
  if (cookies.some((c) => !c) || new Set(cookies).size !== cookies.length) problems.push(`${backendName}: every server needs a cookie of its own (sticky sessions for long polling)`);
  if (!backend.lines.some((l) => /^cookie \S+ insert\b/.test(l))) problems.push(`${backendName}: no cookie insert (long polling needs sticky sessions)`);
  if (!backend.lines.includes('balance leastconn')) problems.push(`${backendName}: not balanced by least connections`);
  if (!backend.lines.includes('http-check send meth GET uri /readyz')) problems.push(`${backendName}: health check is not GET /readyz`);
  if (!backend.lines.includes('http-check expect status 200')) problems.push(`${backendName}: health check does not expect 200`);
  const forwardfor = ['defaults', backendName].some((k) => (sections.get(k) ?? []).some((l) => /^option forwardfor\b/.test(l)));
  if (!forwardfor) problems.push('HAProxy does not add X-Forwarded-For (option forwardfor): the nodes would see every client as HAProxy');
  for (const { name, config } of nodes) {
    if (config.trustProxy !== 1) problems.push(`${name}: TRUST_PROXY is ${JSON.stringify(config.trustProxy)}, not 1 (HAProxy, the one hop in front of the node)`);
  }
  if (!(sections.get('defaults') ?? []).some((l) => /^timeout tunnel \d+[smh]$/.test(l))) problems.push('defaults: no timeout tunnel (WebSocket connections would be cut by timeout client/server)');
  const lb = mountedFile(compose, path.join(DEPLOY, 'haproxy/haproxy.cfg'));
  if (!lb || lb.target !== '/usr/local/etc/haproxy/haproxy.cfg') problems.push('no service mounts deploy/haproxy/haproxy.cfg where HAProxy reads it');
  else {
    const frontend = sections.get([...sections.keys()].find((k) => k.startsWith('frontend ') && (sections.get(k) ?? []).some((l) => l.startsWith('default_backend')))!) ?? [];
    const bind = Number(/^bind \S*:(\d+)$/.exec(frontend.find((l) => l.startsWith('bind')) ?? '')?.[1]);
    if (!publishedPorts(lb.service).some(([, container]) => container === bind)) problems.push(`${lb.name}: does not publish the public frontend's port ${bind}`);
    // Every spelling a node answers (haproxy-metrics.test.ts sends them through the real haproxy).
    if (!frontend.some((l) => /deny.*\{ path,lower -m reg \S*metrics\S* \}/.test(l))) problems.push('the public frontend serves /metrics');
  }
  return problems;
}

interface PrometheusConfig {
  rule_files?: string[];
  scrape_configs: { job_name: string; metrics_path?: string; static_configs: { targets: string[] }[] }[];
}

/** Prometheus: scrapes every node on its PORT under the job the rules name, and loads the repository's rules. */
function checkPrometheus(compose: ComposeFile, nodes: NodeView[], prom: PrometheusConfig, promHost: string): string[] {
  const problems: string[] = [];
  const mount = mountedFile(compose, promHost);
  if (!mount || mount.target !== '/etc/prometheus/prometheus.yml') return ['no service mounts deploy/prometheus/prometheus.yml where Prometheus reads it'];
  const job = prom.scrape_configs.find((j) => j.job_name === 'atoll');
  if (!job) return ['no scrape job "atoll" (the job AtollNodeDown selects)'];
  if ((job.metrics_path ?? '/metrics') !== '/metrics') problems.push(`job atoll scrapes ${job.metrics_path}`);
  const targets = job.static_configs.flatMap((c) => c.targets).sort();
  const expected = nodes.map((n) => `${n.name}:${n.config.port}`).sort();
  if (JSON.stringify(targets) !== JSON.stringify(expected)) problems.push(`job atoll scrapes ${targets.join(', ')}; the nodes are ${expected.join(', ')}`);
  // Relative rule_files are relative to the configuration file's folder.
  const rules = (prom.rule_files ?? []).map((f) => path.posix.resolve('/etc/prometheus', f)).map((f) => ({ container: f, host: hostPathOf(compose, mount.service, f) }));
  if (!rules.some((r) => r.host === RULES)) problems.push(`Prometheus's rule_files (${(prom.rule_files ?? []).join(', ')}) do not load ops/prometheus/atoll-rules.yml through a mount`);
  for (const r of rules) if (!r.host || !fs.existsSync(r.host)) problems.push(`rule file ${r.container} is not mounted from a file in the repository`);
  return problems;
}

/** Grafana: the provisioned data source is the compose file's Prometheus; the provisioned folder holds the shipped dashboard. */
function checkGrafana(compose: ComposeFile): string[] {
  const problems: string[] = [];
  const entry = Object.entries(compose.services).find(([, s]) => (s.image ?? '').startsWith('grafana/grafana'));
  if (!entry) return ['no Grafana service'];
  const [name, grafana] = entry;
  const provisioning = hostPathOf(compose, grafana, '/etc/grafana/provisioning');
  if (!provisioning || !fs.existsSync(provisioning)) return [`${name}: /etc/grafana/provisioning is not mounted from the repository`];
  const yamls = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).map((f) => parseYaml(fs.readFileSync(path.join(dir, f), 'utf8'))) : []);
  const datasources = yamls(path.join(provisioning, 'datasources')).flatMap((d: { datasources?: { type: string; url: string; isDefault?: boolean }[] }) => d.datasources ?? []);
  const prometheus = datasources.find((d) => d.type === 'prometheus' && d.isDefault);
  if (!prometheus) problems.push(`${name}: no default Prometheus data source provisioned`);
  else {
    const url = new URL(prometheus.url);
    const promService = compose.services[url.hostname];
    if (!promService || !(promService.image ?? '').startsWith('prom/prometheus')) problems.push(`${name}: the data source names ${url.hostname}, which is not the Prometheus service`);
    // Prometheus listens on 9090 inside its container (its image's default; the compose file publishes that port).
    else if (url.port !== '9090' || !publishedPorts(promService).some(([, c]) => c === 9090)) problems.push(`${name}: the data source's port ${url.port} is not Prometheus's 9090`);
  }
  const providers = yamls(path.join(provisioning, 'dashboards')).flatMap((d: { providers?: { type: string; options: { path: string } }[] }) => d.providers ?? []);
  const folders = providers.filter((p) => p.type === 'file').map((p) => hostPathOf(compose, grafana, p.options.path));
  if (!folders.some((f) => f && path.resolve(f, path.basename(DASHBOARD)) === DASHBOARD)) problems.push(`${name}: no provisioned dashboard folder is ops/grafana/ (where atoll-dashboard.json is)`);
  return problems;
}

describe('deploy/compose.yaml against the code', () => {
  const { nodes, problems: nodeProblems } = checkNodes(load());

  test('every variable the nodes get is one Atoll reads, the loader accepts it as a cluster, NODE_IDs are distinct, nothing else differs', () => {
    expect(nodeProblems).toEqual([]);
    expect(nodes.map((n) => n.config.nodeId).sort()).toEqual(['atoll-1', 'atoll-2', 'atoll-3']);
    for (const { config } of nodes) {
      expect(config.cluster).toEqual({ redisUrl: 'redis://:0b7e4f2a9c1d58e3a6f0c2d4@redis:6379', keyPrefix: 'atoll:' });
      expect(config.jwtSecret).toBe(SECRETS.AUTH_JWT_SECRET);
      expect(config.nodeLeaseMs).toBe(10_000);
    }
    // The check can fail: a misspelt variable, a value the loader refuses, two nodes with one NODE_ID, a node
    // that differs in more than its id, a node without Redis.
    const env = (c: ComposeFile, node: string) => c.services[node].environment as Record<string, string>;
    expect(checkNodes(broken((c) => (env(c, 'atoll-2').NODE_LEASE = '5000'))).problems).toEqual([
      'atoll-2: NODE_LEASE is not a variable Atoll reads (server/config.ts)',
      'the nodes differ in more than NODE_ID',
    ]);
    expect(checkNodes(broken((c) => (env(c, 'atoll-1').NODE_LEASE_MS = '500'))).problems).toEqual([expect.stringMatching(/^atoll-1: invalid configuration:\n {2}NODE_LEASE_MS: /)]);
    expect(checkNodes(broken((c) => (env(c, 'atoll-3').NODE_ID = 'atoll-1'))).problems).toEqual(['NODE_IDs are not distinct: atoll-1, atoll-2, atoll-1']);
    // The loader's own rule: several nodes need a shared database.
    expect(checkNodes(broken((c) => (env(c, 'atoll-1').DATABASE_URL = 'file:/data/atoll.db'))).problems).toEqual([
      expect.stringMatching(/^atoll-1: invalid configuration:\n {2}REDIS_URL: several nodes need a shared database/),
    ]);
    expect(checkNodes(broken((c) => Object.values(c.services).forEach((s) => s.environment && delete (s.environment as Record<string, string>).REDIS_URL))).problems).toEqual(
      ['atoll-1', 'atoll-2', 'atoll-3'].map((n) => `${n}: REDIS_URL is not set: the node would run alone`),
    );
  });

  test('the secrets come from deploy/.env: each one the file interpolates is in .env.example, required, and .env is ignored by git', () => {
    const compose = load();
    const example = parseEnvFile(fs.readFileSync(ENV_EXAMPLE, 'utf8'));
    expect(Object.keys(example).sort()).toEqual([...compose.variables.keys()].sort());
    expect([...compose.variables].filter(([, v]) => !v.required)).toEqual([]);
    // The example holds no value: compose refuses to start until each is filled in.
    expect(Object.values(example).every((v) => v === '')).toBe(true);
    expect(() => load({ ...SECRETS, AUTH_JWT_SECRET: '' })).toThrow(/AUTH_JWT_SECRET is not set/);
    expect(spawnSync('git', ['check-ignore', '-q', 'deploy/.env'], { cwd: ROOT }).status).toBe(0);
  });

  test('health checks ask /readyz on PORT, nodes wait for a healthy PostgreSQL and Redis and have time to drain', () => {
    expect(checkNodeServices(load(), nodes)).toEqual([]);
    // /readyz is a route the server has (server/http/routes/ops.ts).
    const router = opsRoutes({ operator: () => true, ping: async () => undefined, cells: () => [], draining: () => false }) as unknown as { stack: { route?: { path: string } }[] };
    expect(router.stack.map((l) => l.route?.path)).toContain('/readyz');
    const healthz = broken((c) => {
      const hc = c.services['atoll-2'].healthcheck!;
      hc.test = (hc.test as string[]).map((t) => t.replace('127.0.0.1:3000/readyz', '127.0.0.1:8080/healthz'));
      c.services['atoll-2'].stop_grace_period = '8s';
    });
    expect(checkNodeServices(healthz, nodes)).toEqual([
      'atoll-2: health check on port 8080, PORT is 3000',
      'atoll-2: health check on /healthz, not /readyz',
      'atoll-2: stop_grace_period 8000 ms cuts SHUTDOWN_GRACE_MS short',
    ]);
  });

  test('DATABASE_URL and REDIS_URL name the PostgreSQL 15 and Redis 7 services, with their credentials', () => {
    expect(checkBackingServices(load(), nodes)).toEqual([]);
    const wrong = broken((c) => {
      c.services.postgres.image = 'postgres:16';
      (c.services.postgres.environment as Record<string, string>).POSTGRES_DB = 'other';
    });
    expect(checkBackingServices(wrong, nodes.slice(0, 1))).toEqual(['postgres: image postgres:16 is not PostgreSQL 15', 'atoll-1: DATABASE_URL database is not POSTGRES_DB']);
    const open = broken((c) => (c.services.redis.command = ['redis-server', '--save', '']));
    expect(checkBackingServices(open, nodes.slice(0, 1))).toEqual(['redis: requires no password (--requirepass)']);
    const other = broken((c) => (c.services.redis.command = ['redis-server', '--requirepass', 'another']));
    expect(checkBackingServices(other, nodes.slice(0, 1))).toEqual(['atoll-1: REDIS_URL password is not the one redis requires']);
  });

  test('HAProxy has one health-checked, cookie-sticky server per node on its PORT, leastconn, a WebSocket tunnel timeout, no public /metrics, X-Forwarded-For the nodes trust', () => {
    const cfg = fs.readFileSync(path.join(DEPLOY, 'haproxy/haproxy.cfg'), 'utf8');
    expect(checkLoadBalancer(load(), nodes, cfg)).toEqual([]);
    const moved = cfg.replace('server atoll-2 atoll-2:3000 cookie atoll-2', 'server atoll-2 atoll-2:3001 cookie atoll-1').replace('server atoll-3 atoll-3:3000 cookie atoll-3\n', '');
    expect(checkLoadBalancer(load(), nodes, moved)).toEqual([
      'backend atoll: atoll-2 on port 3001, PORT is 3000',
      'backend atoll: no server for atoll-3',
      'backend atoll: every server needs a cookie of its own (sticky sessions for long polling)',
    ]);
    const untrusted = nodes.map((n, i) => ({ ...n, config: { ...n.config, trustProxy: i === 0 ? false : n.config.trustProxy } }));
    expect(checkLoadBalancer(load(), untrusted, cfg.replace(/^\s*option forwardfor\n/m, ''))).toEqual([
      'HAProxy does not add X-Forwarded-For (option forwardfor): the nodes would see every client as HAProxy',
      'atoll-1: TRUST_PROXY is false, not 1 (HAProxy, the one hop in front of the node)',
    ]);
  });

  test('Prometheus scrapes every node on its PORT and loads ops/prometheus/atoll-rules.yml through its mount', () => {
    const file = path.join(DEPLOY, 'prometheus/prometheus.yml');
    const prom = parseYaml(fs.readFileSync(file, 'utf8')) as PrometheusConfig;
    expect(checkPrometheus(load(), nodes, prom, file)).toEqual([]);
    // The rules' node-down alert selects the job that scrapes the nodes.
    expect(fs.readFileSync(RULES, 'utf8')).toContain('up{job="atoll"} == 0');
    const wrong = structuredClone(prom);
    wrong.scrape_configs[0].static_configs[0].targets[1] = 'atoll-2:9100';
    wrong.rule_files = ['/etc/prometheus/rules/other-rules.yml'];
    expect(checkPrometheus(load(), nodes, wrong, file)).toEqual([
      'job atoll scrapes atoll-1:3000, atoll-2:9100, atoll-3:3000; the nodes are atoll-1:3000, atoll-2:3000, atoll-3:3000',
      "Prometheus's rule_files (/etc/prometheus/rules/other-rules.yml) do not load ops/prometheus/atoll-rules.yml through a mount",
      'rule file /etc/prometheus/rules/other-rules.yml is not mounted from a file in the repository',
    ]);
  });

  test('Grafana gets the Prometheus service as its data source and ops/grafana/atoll-dashboard.json as a provisioned dashboard', () => {
    expect(checkGrafana(load())).toEqual([]);
    const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8'));
    // The dashboard's data source picker defaults to the provisioned Prometheus (the default one).
    expect(dashboard.templating.list.find((v: { type: string }) => v.type === 'datasource')).toMatchObject({ query: 'prometheus' });
    const unmounted = broken((c) => (c.services.grafana.volumes = c.services.grafana.volumes!.filter((v) => !v.startsWith('../ops/grafana'))));
    expect(checkGrafana(unmounted)).toEqual(['grafana: no provisioned dashboard folder is ops/grafana/ (where atoll-dashboard.json is)']);
  });

  test("the image the nodes run has PostgreSQL's migrations and runs the same command on every node", () => {
    const compose = load();
    const dockerfile = buildOf(compose, atollNodes(compose)[0][1])!.dockerfile;
    const stage = runtimeStage(dockerfile);
    const rel = path.relative(ROOT, migrationsFolder('postgresql'));
    expect(listMigrations(migrationsFolder('postgresql')).length).toBeGreaterThan(0);
    // The migrations folder resolves from dist/server/store/ to <workdir>/prisma/postgresql/migrations.
    expect(stage.copies).toContainEqual({ from: 'build', src: `/app/${rel}`, dest: path.posix.join(stage.workdir, rel) });
    expect(stage.cmd).toBe('["node", "dist/server/main.js"]');
  });
});

/** Runs a tool of the machine; fails with how to install it when it is missing. */
function tool(command: string, args: string[], cwd = ROOT) {
  const r = spawnSync(command, args, { cwd, encoding: 'utf8' });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') {
    throw new Error(`${command} is not installed: apt-get install prometheus haproxy (Debian's packages bring promtool and haproxy; .ci/run installs them)`);
  }
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

describe('the configurations, checked by the tools that read them', () => {
  test('promtool: the Prometheus configuration with the rules it mounts is valid', () => {
    // rule_files name container paths: check a copy that names the files they are mounted from.
    const compose = load();
    const source = path.join(DEPLOY, 'prometheus/prometheus.yml');
    const mount = mountedFile(compose, source)!;
    const prom = parseYaml(fs.readFileSync(source, 'utf8')) as PrometheusConfig;
    prom.rule_files = prom.rule_files!.map((f) => hostPathOf(compose, mount.service, f)!);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-prom-'));
    try {
      fs.writeFileSync(path.join(dir, 'prometheus.yml'), stringifyYaml(prom));
      const r = tool('promtool', ['check', 'config', path.join(dir, 'prometheus.yml')]);
      expect({ status: r.status, output: r.output }).toMatchObject({ status: 0 });
      expect(r.output).toMatch(/SUCCESS: 1 rule files found/);
      // The check can fail: a rule file that does not parse.
      fs.writeFileSync(path.join(dir, 'bad-rules.yml'), 'groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: sum(\n');
      expect(tool('promtool', ['check', 'rules', path.join(dir, 'bad-rules.yml')]).status).not.toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("promtool: the alert rules' unit tests pass (alerts per node, node-down)", () => {
    const r = tool('promtool', ['test', 'rules', path.relative(ROOT, RULES_TESTS)]);
    expect({ status: r.status, output: r.output }).toMatchObject({ status: 0 });
    expect(r.output).toMatch(/SUCCESS/);
  });

  test('haproxy -c: the load balancer configuration is valid', () => {
    const r = tool('haproxy', ['-c', '-f', path.join(DEPLOY, 'haproxy/haproxy.cfg')]);
    expect({ status: r.status, output: r.output }).toMatchObject({ status: 0 });
    expect(r.output).toMatch(/Configuration file is valid/);
    // The only warnings: node names that do not resolve outside the compose network (init-addr none).
    const warnings = r.output.split('\n').filter((l) => l.includes('[WARNING]'));
    expect(warnings.every((w) => /could not resolve address 'atoll-\d'/.test(w))).toBe(true);
  });
});
