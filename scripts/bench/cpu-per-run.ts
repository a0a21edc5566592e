/**
 * CPU time per run of each Atoll process (front, each cell, the bench's own clients), from /proc/<pid>/stat:
 * steadier than runs/s on a shared machine. `node dist/scripts/bench/cpu-per-run.js [runs] [warmup]`;
 * extra server variables through CPU_BENCH_ENV='{"K":"V"}', the front's node flags through CPU_BENCH_NODE_ARGS
 * (e.g. '--cpu-prof --cpu-prof-dir=/tmp/p'), CPU_BENCH_DB=postgresql for PostgreSQL, CPU_BENCH_TARGET=in-process for the
 * bench's in-process baseline server (the design Atoll's throughput target is a fraction of). Linux only.
 *
 * CPU_BENCH_NODES=N: a cluster instead (PostgreSQL and the Redis of CPU_BENCH_REDIS, default
 * redis://127.0.0.1:6379), shaped as the cluster bench's rows (one node: 2 cells × 2 threads; three: 1 × 2 each;
 * 6 clients dealt round robin over the nodes); every front and cell is counted, and so are PostgreSQL's and
 * Redis's processes (the whole server: run it on an otherwise idle one). CPU_BENCH_CLIENTS and CPU_BENCH_INFLIGHT
 * (runs in flight per client, default 2) change the load.
 *
 * Also per run and process: write system calls (writes_per_run) and the main thread's involuntary context switches
 * (preempted_per_run).
 *
 * CPU_BENCH_IDLE_MS=N: afterwards, with the clients still connected and nothing sent, the CPU each process spends
 * per second at rest over N ms (timers, heartbeats, leases: a cost every node pays whatever its share of the load).
 */
import fs from 'node:fs';
import { startAtoll } from './atoll-server.js';
import { BASELINE_ENTRY } from './paths.js';
import { startServer } from './spawn.js';
import { postgresqlDatabase, sqliteDatabase } from './databases.js';
import { connectClients, drive } from './driver.js';
import { startCluster } from './cluster-nodes.js';
import { redisScratches } from './redis-scratch.js';

const TICK_MS = 10; // USER_HZ is 100 on Linux x64

function cpuMs(pid: number): number {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    // A cell replaced mid-measurement (its CPU is lost with it): the figures would be wrong, not just noisy.
    throw new Error(`process ${pid} is gone: a cell died or was replaced during the measurement; run again`);
  }
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_MS; // utime, stime (fields 14, 15)
}

/**
 * Write system calls (the whole process, /proc/<pid>/io) and the main thread's involuntary context switches
 * (/proc/<pid>/status) so far: each write to a socket may wake its reader, and on a machine with more busy
 * processes than cores a woken reader takes the writer's core (a switch that costs both processes cache).
 */
function wakeCounters(pid: number): { writes: number; preempted: number } {
  const io = fs.readFileSync(`/proc/${pid}/io`, 'utf8');
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return { writes: Number(/^syscw:\s*(\d+)/m.exec(io)?.[1] ?? NaN), preempted: Number(/^nonvoluntary_ctxt_switches:\s*(\d+)/m.exec(status)?.[1] ?? NaN) };
}

/** CPU so far of every process named `comm` (postgres, redis-server); one that ended meanwhile counts as 0. */
function cpuOfCommand(comm: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === comm) out.set(Number(entry), cpuMs(Number(entry)));
    } catch {
      // gone
    }
  }
  return out;
}

/** CPU of the processes named `comm` between two readings (those started in between count from 0). */
function commandDelta(before: Map<number, number>, after: Map<number, number>): number {
  let sum = 0;
  for (const [pid, ms] of after) sum += ms - (before.get(pid) ?? 0);
  return sum;
}

/** What is measured: the processes to read by name, and how to stop. */
interface Target {
  urls: string[];
  clients: number;
  processes(): Map<string, number>;
  cellsDied(): unknown[];
  services: string[];
  stop(): Promise<void>;
}

async function startTarget(extra: Record<string, string>, nodeArgs: string[]): Promise<Target> {
  const nodes = Number(process.env.CPU_BENCH_NODES ?? 0);
  if (nodes > 0) {
    const db = postgresqlDatabase('postgresql://postgres@127.0.0.1:5432/postgres');
    const redis = redisScratches(process.env.CPU_BENCH_REDIS ?? 'redis://127.0.0.1:6379');
    const shape = nodes === 1 ? { cells: 2, threads: 2 } : { cells: 1, threads: 2 };
    const cluster = await startCluster(db, redis, { nodes, ...shape, leaseMs: 10_000, extra, nodeArgs }, 'cpu');
    return {
      urls: cluster.urls(),
      clients: 6,
      processes: () => new Map(cluster.nodes.flatMap((n) => [[`front${n.index + 1}`, n.server.pid] as [string, number], ...[...n.server.cellPids()].map(([c, p]) => [`n${n.index + 1}-${c}`, p] as [string, number])])),
      cellsDied: () => cluster.nodes.flatMap((n) => n.server.cellLog.filter((l) => l.msg !== 'cell ready')),
      services: ['postgres', 'redis-server'],
      stop: () => cluster.stop(),
    };
  }
  const db = process.env.CPU_BENCH_DB === 'postgresql' ? postgresqlDatabase('postgresql://postgres@127.0.0.1:5432/postgres') : sqliteDatabase();
  const inProcess = process.env.CPU_BENCH_TARGET === 'in-process';
  const server = inProcess ? await startServer(BASELINE_ENTRY, {}, ['--mode', 'in-process', '--slots', '4'], { nodeArgs }) : await startAtoll(db, 2, 2, extra, nodeArgs);
  return {
    urls: [server.url],
    clients: 4,
    processes: () => new Map<string, number>([['front', server.pid], ...server.cellPids()]),
    cellsDied: () => server.cellLog.filter((l) => l.msg !== 'cell ready'),
    services: process.env.CPU_BENCH_DB === 'postgresql' ? ['postgres'] : [],
    stop: () => server.stop(),
  };
}

/** Worker threads retired (recycled or switched user) so far, by reason, from the servers' metrics. */
async function retiredWorkers(urls: string[]): Promise<Record<string, number>> {
  if (process.env.CPU_BENCH_TARGET === 'in-process') return {};
  const out: Record<string, number> = {};
  for (const url of urls) {
    const text = await (await fetch(`${url}/metrics`)).text();
    for (const m of text.matchAll(/^atoll_worker_recycles_total\{reason="([^"]+)"\} (\d+)/gm)) out[m[1]] = (out[m[1]] ?? 0) + Number(m[2]);
  }
  return out;
}

/** CPU ms per second of each process over `ms` with nothing sent ({} when ms is 0). */
async function idleCpu(target: Target, ms: number): Promise<{ idle_ms_per_s?: Record<string, number> }> {
  if (ms <= 0) return {};
  await new Promise((r) => setTimeout(r, 1000)); // the last run's stragglers (stats, metrics, commits)
  const pids = target.processes();
  const before = new Map([...pids].map(([k, p]) => [k, cpuMs(p)]));
  const services0 = new Map(target.services.map((c) => [c, cpuOfCommand(c)]));
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, ms));
  const seconds = (Date.now() - t0) / 1000;
  const out: Record<string, number> = {};
  for (const [k, p] of pids) out[k] = Number(((cpuMs(p) - before.get(k)!) / seconds).toFixed(1));
  for (const [c, b] of services0) out[c] = Number((commandDelta(b, cpuOfCommand(c)) / seconds).toFixed(1));
  return { idle_ms_per_s: out };
}

async function main() {
  const runs = Number(process.argv[2] ?? 2000);
  const warmup = Number(process.argv[3] ?? 300);
  const extra = process.env.CPU_BENCH_ENV ? (JSON.parse(process.env.CPU_BENCH_ENV) as Record<string, string>) : {};
  const nodeArgs = process.env.CPU_BENCH_NODE_ARGS ? process.env.CPU_BENCH_NODE_ARGS.split(' ') : [];
  const inProcess = process.env.CPU_BENCH_TARGET === 'in-process';
  const target = await startTarget(extra, nodeArgs);
  const clients = await connectClients(target.urls, Number(process.env.CPU_BENCH_CLIENTS ?? target.clients), inProcess ? 'none' : 'dev-login', 'cpu');
  try {
    const shape = { inflightPerClient: Number(process.env.CPU_BENCH_INFLIGHT ?? 2), agent: 'steps', input: { text: 'bench' }, runTimeoutMs: 30_000 };
    await drive(clients, { ...shape, total: warmup });
    const died = target.cellsDied();
    if (died.length > 0) throw new Error(`cells died during the warm-up: ${JSON.stringify(died)}`);
    const pids = target.processes();
    const before = new Map([...pids].map(([k, p]) => [k, cpuMs(p)]));
    const wakes0 = new Map([...pids].map(([k, p]) => [k, wakeCounters(p)]));
    const services0 = new Map(target.services.map((c) => [c, cpuOfCommand(c)]));
    const retired0 = await retiredWorkers(target.urls);
    const self0 = process.cpuUsage();
    const r = await drive(clients, { ...shape, total: runs });
    const self = process.cpuUsage(self0);
    const per: Record<string, number> = {};
    let total = 0;
    const writes: Record<string, number> = {};
    const preempted: Record<string, number> = {};
    for (const [k, p] of pids) {
      per[k] = (cpuMs(p) - before.get(k)!) / r.completed;
      total += per[k];
      const w = wakeCounters(p);
      writes[k] = Number(((w.writes - wakes0.get(k)!.writes) / r.completed).toFixed(2));
      preempted[k] = Number(((w.preempted - wakes0.get(k)!.preempted) / r.completed).toFixed(2));
    }
    for (const [c, b] of services0) {
      per[c] = commandDelta(b, cpuOfCommand(c)) / r.completed;
      total += per[c];
    }
    per.clients = (self.user + self.system) / 1000 / r.completed;
    total += per.clients;
    const retired1 = await retiredWorkers(target.urls);
    const workers_retired = Object.fromEntries(Object.entries(retired1).map(([k, v]) => [k, v - (retired0[k] ?? 0)]));
    const fmt = (n: number) => n.toFixed(3);
    const idle = await idleCpu(target, Number(process.env.CPU_BENCH_IDLE_MS ?? 0));
    console.log(
      JSON.stringify({ completed: r.completed, failed: r.failed, runs_per_s: r.runs_per_s, ms_per_run: Object.fromEntries(Object.entries(per).map(([k, v]) => [k, Number(fmt(v))])), total: Number(fmt(total)), writes_per_run: writes, preempted_per_run: preempted, workers_retired, ...idle }),
    );
  } finally {
    clients.close();
    await target.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
