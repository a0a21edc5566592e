/**
 * CPU time per run of each Atoll process (front, each cell, the bench's own clients), from /proc/<pid>/stat:
 * steadier than runs/s on a shared machine. `node dist/scripts/bench/cpu-per-run.js [runs] [warmup]`;
 * extra server variables through CPU_BENCH_ENV='{"K":"V"}', the front's node flags through CPU_BENCH_NODE_ARGS
 * (e.g. '--cpu-prof --cpu-prof-dir=/tmp/p'), CPU_BENCH_DB=postgresql for PostgreSQL, CPU_BENCH_TARGET=in-process for the
 * bench's in-process baseline server (the design Atoll's throughput target is a fraction of). Linux only.
 */
import fs from 'node:fs';
import { startAtoll } from './atoll-server.js';
import { BASELINE_ENTRY } from './paths.js';
import { startServer } from './spawn.js';
import { postgresqlDatabase, sqliteDatabase } from './databases.js';
import { connectClients, drive } from './driver.js';

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

/** Worker threads retired (recycled or switched user) so far, by reason, from the server's metrics. */
async function retiredWorkers(url: string): Promise<Record<string, number>> {
  if (process.env.CPU_BENCH_TARGET === 'in-process') return {};
  const text = await (await fetch(`${url}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^atoll_worker_recycles_total\{reason="([^"]+)"\} (\d+)/gm)) out[m[1]] = Number(m[2]);
  return out;
}

async function main() {
  const runs = Number(process.argv[2] ?? 2000);
  const warmup = Number(process.argv[3] ?? 300);
  const extra = process.env.CPU_BENCH_ENV ? (JSON.parse(process.env.CPU_BENCH_ENV) as Record<string, string>) : {};
  const db = process.env.CPU_BENCH_DB === 'postgresql' ? postgresqlDatabase('postgresql://postgres@127.0.0.1:5432/postgres') : sqliteDatabase();
  const inProcess = process.env.CPU_BENCH_TARGET === 'in-process';
  const nodeArgs = process.env.CPU_BENCH_NODE_ARGS ? process.env.CPU_BENCH_NODE_ARGS.split(' ') : [];
  const server = inProcess ? await startServer(BASELINE_ENTRY, {}, ['--mode', 'in-process', '--slots', '4'], { nodeArgs }) : await startAtoll(db, 2, 2, extra, nodeArgs);
  const clients = await connectClients(server.url, 4, inProcess ? 'none' : 'dev-login', 'cpu');
  try {
    const shape = { inflightPerClient: 2, agent: 'steps', input: { text: 'bench' }, runTimeoutMs: 30_000 };
    await drive(clients, { ...shape, total: warmup });
    const died = server.cellLog.filter((l) => l.msg !== 'cell ready');
    if (died.length > 0) throw new Error(`cells died during the warm-up: ${JSON.stringify(died)}`);
    const pids = new Map<string, number>([['front', server.pid], ...server.cellPids()]);
    const before = new Map([...pids].map(([k, p]) => [k, cpuMs(p)]));
    const retired0 = await retiredWorkers(server.url);
    const self0 = process.cpuUsage();
    const r = await drive(clients, { ...shape, total: runs });
    const self = process.cpuUsage(self0);
    const per: Record<string, number> = {};
    let total = 0;
    for (const [k, p] of pids) {
      per[k] = (cpuMs(p) - before.get(k)!) / r.completed;
      total += per[k];
    }
    per.clients = (self.user + self.system) / 1000 / r.completed;
    total += per.clients;
    const retired1 = await retiredWorkers(server.url);
    const workers_retired = Object.fromEntries(Object.entries(retired1).map(([k, v]) => [k, v - (retired0[k] ?? 0)]));
    const fmt = (n: number) => n.toFixed(3);
    console.log(
      JSON.stringify({ completed: r.completed, failed: r.failed, runs_per_s: r.runs_per_s, ms_per_run: Object.fromEntries(Object.entries(per).map(([k, v]) => [k, Number(fmt(v))])), total: Number(fmt(total)), workers_retired }),
    );
  } finally {
    clients.close();
    await server.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
