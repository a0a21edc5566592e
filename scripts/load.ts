/**
 * `npm run load`: a load generator of real socket.io users against a running Atoll (this process is
 * only a client). Composition root: flags → users → phases (a no-chaos baseline first when --chaos is
 * set) → isolation check → JSON report and summary. Every loop is bounded in count and time.
 */
import fs from 'node:fs';
import path from 'node:path';
import { UsageError } from './load/argv.js';
import { getJson, userToken } from './load/auth.js';
import { defaultUrl, helpText, parseLoadOptions, type LoadOptions } from './load/options.js';
import { runPhase, type PhaseResult } from './load/phase.js';
import { startProgress } from './load/progress.js';
import { buildReport } from './load/report.js';
import { createServerWatch } from './load/server-watch.js';
import { sleep } from './load/stats.js';
import { formatSummary } from './load/summary.js';
import { checkIsolation } from './load/verify.js';
import { VirtualUser, newCounters } from './load/virtual-user.js';

/** The target cannot be used (unreachable, no dev login, missing agent): exit 3. */
class SetupError extends Error {}

const CONNECT_BATCH = 50;
/** Let the cells' 1 s stats reports and the lag gauge catch up before the "after" scrape. */
const SETTLE_MS = 1200;

async function connectUsers(opts: LoadOptions): Promise<VirtualUser[]> {
  const users: VirtualUser[] = [];
  for (let i = 0; i < opts.users; i += CONNECT_BATCH) {
    const batch = Array.from({ length: Math.min(CONNECT_BATCH, opts.users - i) }, async (_, j) => {
      const id = `${opts.userPrefix}${i + j + 1}`;
      const token = await userToken(opts.url, id, opts.jwtSecret, opts.ackTimeoutMs);
      return VirtualUser.connect(opts.url, id, token, newCounters(), opts.ackTimeoutMs);
    });
    const settled = await Promise.allSettled(batch);
    for (const s of settled) if (s.status === 'fulfilled') users.push(s.value);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) {
      users.forEach((u) => u.close());
      throw new SetupError(String(failed.reason?.message ?? failed.reason));
    }
  }
  return users;
}

async function checkTarget(opts: LoadOptions, user: VirtualUser): Promise<void> {
  const agents = await getJson(opts.url, '/v1/agents', user.token, opts.ackTimeoutMs);
  const names: string[] = agents.status === 200 ? agents.body.agents.map((a: { name: string }) => a.name) : [];
  if (!names.includes(opts.agent)) throw new SetupError(`the server has no agent ${JSON.stringify(opts.agent)} (it has: ${names.join(', ') || 'none'})`);
  if (opts.chaos > 0 && !names.includes('chaos')) throw new SetupError('--chaos needs the chaos agent: start the server with ENABLE_CHAOS_AGENTS=1');
}

async function main(argv: string[]): Promise<number> {
  let opts: LoadOptions;
  try {
    const parsed = parseLoadOptions(argv, process.env, new Date());
    if (parsed === 'help') {
      process.stdout.write(helpText(defaultUrl(process.env)));
      return 0;
    }
    opts = parsed;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`load: ${err.message}\n`);
      return 2;
    }
    throw err;
  }

  const startedAt = new Date();
  const health = await getJson(opts.url, '/healthz', null, opts.ackTimeoutMs).catch((err) => {
    throw new SetupError(`cannot reach ${opts.url}: ${err?.cause?.code ?? err?.message ?? err}`);
  });
  if (health.status !== 200) throw new SetupError(`${opts.url}/healthz answered ${health.status}`);

  const users = await connectUsers(opts);
  try {
    await checkTarget(opts, users[0]);
    const watch = createServerWatch(opts.url, opts.metricsEveryMs, opts.ackTimeoutMs, opts.metricsToken);
    await watch.before();
    watch.start();
    // Ctrl-C: no new runs; the ones in flight finish (bounded by --run-timeout) and the report is written.
    // A second Ctrl-C exits at once.
    let interrupted = false;
    process.once('SIGINT', () => {
      interrupted = true;
      process.stderr.write('\nload: interrupted; finishing the runs in flight (Ctrl-C again to quit now)\n');
      process.once('SIGINT', () => process.exit(130));
    });
    const phases: PhaseResult[] = [];
    const plan: [string, number][] = opts.baseline ? [['baseline', 0], ['main', opts.chaos]] : [['main', opts.chaos]];
    for (const [name, chaos] of plan) {
      if (interrupted) break;
      const counters = newCounters();
      const progress = startProgress(name, counters, opts.durationMs === null ? opts.users * opts.runsPerUser : null, process.stderr, opts.progress);
      phases.push(await runPhase(opts, name, chaos, users, counters, () => interrupted));
      progress.stop();
    }
    await watch.stop();
    await sleep(SETTLE_MS);
    const observations = phases.flatMap((p) => p.observations);
    const isolation = await checkIsolation(opts.url, users, observations, opts.verifyLimit, opts.ackTimeoutMs);
    const report = buildReport({ opts, startedAt, finishedAt: new Date(), phases, isolation, server: await watch.after(), interrupted });
    fs.mkdirSync(path.dirname(path.resolve(opts.out)), { recursive: true });
    fs.writeFileSync(opts.out, JSON.stringify(report, null, 2) + '\n');
    process.stdout.write(formatSummary(report, opts.out));
    return report.verdict.ok ? 0 : 1;
  } finally {
    users.forEach((u) => u.close());
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`load: ${err instanceof SetupError ? err.message : String(err?.stack ?? err)}\n`);
    process.exit(err instanceof SetupError ? 3 : 1);
  },
);
