/**
 * `npm run cluster:check`: a Jepsen-style checker of Atoll's cluster contract (issue 14). Composition root:
 * flags → a fresh PostgreSQL database and Redis key prefix → N nodes (scripts/cluster/nodes.ts) → the audit
 * trigger (audit.ts) → a seeded workload with faults (plan.ts, workload.ts) → settle and take the history
 * (settle.ts) → the checks (checks/) → the printout (report.ts). Exit 0: no violation; 1: violations; 2: bad
 * flags; 3: the cluster could not be set up.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UsageError } from './load/argv.js';
import { installAudit } from './cluster/audit.js';
import { signToken } from './cluster/client.js';
import { checkHistory } from './cluster/checks/check-history.js';
import { createCheckDatabase, type CheckDatabase } from './cluster/database.js';
import type { History, Limits } from './cluster/history.js';
import { ROOT, startCluster, type Cluster } from './cluster/nodes.js';
import { HELP, parseCheckOptions, type CheckOptions } from './cluster/options.js';
import { makePlan } from './cluster/plan.js';
import { freshKeyPrefix, removeKeys, startPrivateRedis, type PrivateRedis } from './cluster/redis.js';
import { formatResult } from './cluster/report.js';
import { settle, takeHistory } from './cluster/settle.js';
import { runWorkload } from './cluster/workload.js';

const JWT_SECRET = 'cluster-check-secret-cluster-check-secret';
const ACK_TIMEOUT_MS = 15_000;
/** The test agents: `streamer` (repeatable, streams parts) and `unrepeatable` (static repeatable = false). */
const AGENTS_DIR = path.join(ROOT, 'tests/fixtures/agents');

const say = (line: string) => process.stderr.write(`cluster:check: ${line}\n`);

class SetupError extends Error {}

interface Saved {
  seed: number;
  limits: Limits;
  history: History;
}

function report(saved: Saved, header: string[], out: string | null): number {
  const result = checkHistory(saved.history, saved.limits);
  process.stdout.write(formatResult(saved.history, result, { seed: saved.seed, header }) + '\n');
  if (out) fs.writeFileSync(out, JSON.stringify({ seed: saved.seed, limits: saved.limits, counts: result.counts, skipped: result.skipped, violations: result.violations }, null, 2));
  return result.violations.length === 0 ? 0 : 1;
}

async function unrepeatableAgents(url: string, token: string): Promise<string[]> {
  const res = await fetch(`${url}/v1/agents`, { headers: { authorization: `Bearer ${token}` } });
  if (res.status !== 200) throw new SetupError(`GET /v1/agents answered ${res.status}`);
  const agents = ((await res.json()) as { agents: { name: string; repeatable: boolean }[] }).agents;
  for (const name of ['streamer', 'unrepeatable']) if (!agents.some((a) => a.name === name)) throw new SetupError(`the nodes have no agent ${name} (AGENTS_DIR=${AGENTS_DIR})`);
  return agents.filter((a) => a.repeatable === false).map((a) => a.name);
}

async function run(opts: CheckOptions): Promise<number> {
  const replay = `npm run cluster:check -- --seed ${opts.seed} --nodes ${opts.nodes} --runs ${opts.runs} --users ${opts.users} --duration ${opts.durationMs / 1000} --kills ${opts.kills} --pause ${opts.pauses}${opts.redisRestarts ? ' --redis-restart' : ''}${opts.noRedis ? ' --no-redis' : ''} --lease-ms ${opts.leaseMs} --cap ${opts.cap}`;
  say(`seed ${opts.seed} (replay: ${replay})`);
  const logDir = opts.logDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-cluster-check-'));
  fs.mkdirSync(logDir, { recursive: true });

  let database: CheckDatabase | null = null;
  let privateRedis: PrivateRedis | null = null;
  let cluster: Cluster | null = null;
  let clients: { close(): void }[] = [];
  const keyPrefix = freshKeyPrefix();
  let redisUrl = opts.redisUrl;
  let failed = true;
  // Interrupted (Ctrl-C, a timeout's SIGTERM): the nodes are process groups of their own and would outlive this.
  const interrupted = (signal: NodeJS.Signals) => {
    say(`${signal}: stopping the nodes`);
    void (cluster?.close() ?? Promise.resolve()).finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    const databaseUrl = opts.databaseUrl ?? (database = await createCheckDatabase(opts.postgresServer)).url;
    if (opts.redisRestarts > 0) {
      privateRedis = await startPrivateRedis();
      redisUrl = privateRedis.url;
    }
    say(`database ${databaseUrl}; ${opts.noRedis ? 'no Redis (single-node mode)' : `Redis ${redisUrl} prefix ${keyPrefix}`}; logs in ${logDir}`);
    try {
      cluster = await startCluster({
        size: opts.nodes,
        databaseUrl,
        redis: opts.noRedis ? null : { url: redisUrl, keyPrefix },
        jwtSecret: JWT_SECRET,
        leaseMs: opts.leaseMs,
        logDir,
        env: {
          AGENTS_DIR,
          USER_MAX_CONCURRENT_RUNS: String(opts.cap),
          MAX_RUN_ATTEMPTS: String(opts.maxAttempts),
          USER_MAX_QUEUED_RUNS: '100',
        },
      });
    } catch (err) {
      throw new SetupError((err as Error).message);
    }
    await installAudit(databaseUrl);
    const limits: Limits = {
      userMaxConcurrentRuns: opts.cap,
      maxRunAttempts: opts.maxAttempts,
      queueInDatabase: !opts.noRedis,
      unrepeatableAgents: await unrepeatableAgents(cluster.url(1), signToken(JWT_SECRET, 'checker')),
    };
    say(`${opts.nodes} node(s) up: ${cluster.slots.map((s) => `${cluster!.node(s).nodeId} ${cluster!.url(s)}`).join(', ')}`);

    const plan = makePlan({ seed: opts.seed, nodes: opts.nodes, users: opts.users, runs: opts.runs, durationMs: opts.durationMs, kills: opts.kills, pauses: opts.pauses, redisRestarts: opts.redisRestarts, leaseMs: opts.leaseMs });
    const started = Date.now();
    const work = await runWorkload({ cluster, plan, jwtSecret: JWT_SECRET, redis: privateRedis, ackTimeoutMs: ACK_TIMEOUT_MS, progress: say });
    clients = work.clients;
    say(`workload sent in ${Math.round((Date.now() - started) / 1000)} s; settling`);
    const settled = await settle({ databaseUrl, clients: work.clients, timeoutMs: 120_000 + 5 * opts.leaseMs, progress: say });
    const history = await takeHistory(databaseUrl, work.requests, work.clients, true);
    const saved: Saved = { seed: opts.seed, limits, history };
    fs.writeFileSync(path.join(logDir, 'history.json'), JSON.stringify(saved));
    const header = [
      `seed ${opts.seed}: ${opts.nodes} nodes, ${opts.users} users, ${opts.runs} runs over ${opts.durationMs / 1000} s, NODE_LEASE_MS=${opts.leaseMs}, USER_MAX_CONCURRENT_RUNS=${opts.cap}, MAX_RUN_ATTEMPTS=${opts.maxAttempts}`,
      `faults: ${work.faults.map((f) => `${f.kind}${f.node ? ` ${f.node}` : ''} (${f.detail})`).join('; ') || 'none'}`,
      ...(work.startFailures.length ? [`NODE RESTARTS THAT FAILED (not a contract violation, but look): ${work.startFailures.join('; ')}`] : []),
      `stops: ${work.stops.length} sent; settled ${settled.settledMs === null ? `NOT within the wait (${settled.unfinished} runs left)` : `${settled.settledMs} ms after the workload`}`,
      `history: ${path.join(logDir, 'history.json')} (re-check with --check)`,
    ];
    const code = report(saved, header, opts.out);
    failed = code !== 0;
    return code;
  } finally {
    for (const c of clients) c.close();
    await cluster?.close();
    if (!opts.noRedis) await removeKeys(redisUrl, keyPrefix).catch((err) => say(`could not remove the Redis keys ${keyPrefix}*: ${err.message}`));
    await privateRedis?.stop();
    if (failed || opts.keep) say(`kept ${database ? `the database ${database.url} and ` : ''}the logs in ${logDir}`);
    else {
      await database?.drop().catch((err) => say(`could not drop ${database!.name}: ${err.message}`));
      if (!opts.logDir) fs.rmSync(logDir, { recursive: true, force: true });
    }
  }
}

async function main(argv: string[]): Promise<number> {
  let opts: CheckOptions | 'help';
  try {
    opts = parseCheckOptions(argv, process.env);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`cluster:check: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (opts === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  if (opts.checkFile) {
    const saved = JSON.parse(fs.readFileSync(opts.checkFile, 'utf8')) as Saved;
    return report(saved, [`re-checking ${opts.checkFile}`], opts.out);
  }
  try {
    return await run(opts);
  } catch (err) {
    if (err instanceof SetupError) {
      process.stderr.write(`cluster:check: the cluster could not be set up: ${err.message}\n`);
      return 3;
    }
    throw err;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`cluster:check: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
