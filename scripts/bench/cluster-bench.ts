/**
 * `npm run bench -- --cluster`: several Atoll nodes on this machine, on PostgreSQL and Redis. Measures, in this
 * order: runs/s through each row of cluster-throughput.ts, the rows taking turns for --reps repetitions, each on
 * a cluster of its own (a fresh database and Redis key prefix); on the last three-node cluster, once its
 * throughput is measured, event latency within a node against across nodes (event-latency.ts) and takeover after
 * SIGKILL with the first NODE_LEASE_MS (takeover.ts); then takeover with each further NODE_LEASE_MS on a fresh
 * three-node cluster. Everything it starts it stops and removes.
 */
import os from 'node:os';
import { metricValue } from '../load/prom.js';
import { ratio, round } from '../load/stats.js';
import { maskPassword } from '../../server/store/database-target.js';
import { CLUSTER_VARIANTS, SHARED_VARIANT, type ClusterVariantKey } from './cluster-throughput.js';
import { renderClusterMarkdown } from './cluster-table.js';
import { startCluster, type Cluster } from './cluster-nodes.js';
import type { BenchDatabase } from './databases.js';
import { eventLatency, type EventLatencyReport } from './event-latency.js';
import type { Machine } from './machine.js';
import type { BenchOptions } from './options.js';
import type { RedisScratches } from './redis-scratch.js';
import type { ClusterBenchReport, ClusterThroughputRow } from './report-types.js';
import { takeover, type TakeoverReport } from './takeover.js';
import { socketVariant, summarizeRounds, type Round } from './variants.js';

/**
 * Every node may run the chaos agent (the takeover's slow runs; the other rows never call it), and lets a run
 * live 5 minutes rather than 30 s: a slow run must outlast the round's set-up and a takeover on a busy machine.
 */
const NODE_EXTRA = { ENABLE_CHAOS_AGENTS: '1', RUN_TIMEOUT_MS: '300000' };
const TAKEOVER_NODES = 3;
/** Runs before the latency runs, not counted (the first runs of a user start its worker threads). */
const LATENCY_WARMUP = 6;
const LATENCY_INFLIGHT = 2;

export async function clusterBench(opts: BenchOptions, deps: { db: BenchDatabase; redis: RedisScratches; machine: Machine; startedAt: Date; log: (msg: string) => void }): Promise<ClusterBenchReport> {
  const { db, redis, log } = deps;
  const [leaseMs, ...otherLeases] = opts.takeoverLeaseMs;
  const throughput: Partial<Record<ClusterVariantKey, ClusterThroughputRow>> = {};
  const measured: { latency?: EventLatencyReport } = {};
  const takeovers: TakeoverReport[] = [];
  const startFailures: string[] = [];
  const latencyOpts = { runs: opts.latencyRuns, warmup: opts.quick ? 2 : LATENCY_WARMUP, inflight: LATENCY_INFLIGHT };

  // The rows take turns, one repetition each on a cluster started for it, so every row's median comes from the
  // same minutes (this machine's speed drifts, and other work shares it).
  const variants = CLUSTER_VARIANTS.filter((v) => !opts.quick || !v.full);
  const rounds = new Map<ClusterVariantKey, Round[]>(variants.map((v) => [v.key, []]));
  const counted = new Map<ClusterVariantKey, { recycles: number | null; threads: number | null; leasesLost: number | null }>();
  for (let rep = 0; rep < opts.reps; rep++) {
    for (const v of variants) {
      log(`cluster: ${v.label}${opts.reps > 1 ? `, repetition ${rep + 1}/${opts.reps}` : ''}`);
      await using(startCluster(db, v.cluster ? redis : null, { nodes: v.nodes, cells: v.cells, threads: v.threads, leaseMs, extra: NODE_EXTRA }, `bench-${v.key.replace(/_/g, '-')}`), startFailures, async (cluster) => {
        const { report } = await socketVariant(`cluster ${v.key}`, cluster.urls(), 'dev-login', { ...opts, reps: 1 });
        rounds.get(v.key)!.push(...report.rounds);
        counted.set(v.key, {
          recycles: await sumOverNodes(cluster, 'atoll_worker_recycles_total', { reason: 'user_switch' }),
          threads: await sumOverNodes(cluster, 'atoll_threads_alive', {}),
          leasesLost: v.cluster ? await sumOverNodes(cluster, 'atoll_node_leases_lost_total', {}) : null,
        });
        // Once, on the last three-node cluster: the other measurements.
        if (v.key !== SHARED_VARIANT || rep !== opts.reps - 1) return;
        log(`cluster: event latency, a socket on each of ${cluster.nodes.length} nodes, ${opts.latencyRuns} runs`);
        measured.latency = await eventLatency(cluster, latencyOpts);
        takeovers.push(await takeover(cluster, opts.takeoverRounds, log));
      });
    }
  }
  for (const v of variants) {
    const c = counted.get(v.key)!;
    throughput[v.key] = { ...summarizeRounds(v.label, rounds.get(v.key)!), nodes: v.nodes, cells_per_node: v.cells, threads_per_node: v.threads, cluster: v.cluster, worker_recycles_user_switch: c.recycles, threads_alive_after: c.threads, leases_lost: c.leasesLost };
  }
  for (const lease of otherLeases) {
    const shape = { nodes: TAKEOVER_NODES, cells: 1, threads: 2, leaseMs: lease, extra: NODE_EXTRA };
    takeovers.push(await using(startCluster(db, redis, shape, `bench-takeover-${lease}`), startFailures, (cluster) => takeover(cluster, opts.takeoverRounds, log)));
  }

  const rps = (k: ClusterVariantKey) => throughput[k]?.runs_per_s ?? null;
  const finishedAt = new Date();
  const machine = { ...deps.machine, loadavg_at_end: round(os.loadavg()[0], 2) };
  const report: ClusterBenchReport = {
    tool: 'atoll-bench',
    mode: 'cluster',
    version: 1,
    quick: opts.quick,
    started_at: deps.startedAt.toISOString(),
    finished_at: finishedAt.toISOString(),
    duration_s: round((finishedAt.getTime() - deps.startedAt.getTime()) / 1000, 1)!,
    machine,
    settings: {
      postgresql: maskPassword(opts.postgresqlUrl),
      redis: maskPassword(opts.redisUrl),
      reps: opts.reps,
      runs: opts.runs,
      round_s: opts.roundMs / 1000,
      warmup: opts.warmup,
      warmup_s: opts.warmupMs / 1000,
      clients: opts.clients,
      inflight: opts.inflight,
      lease_ms: leaseMs,
      latency_runs: opts.latencyRuns,
      takeover_rounds: opts.takeoverRounds,
      takeover_lease_ms: opts.takeoverLeaseMs,
    },
    throughput,
    ratios: {
      three_nodes_over_one_node: ratio(rps('three_nodes'), rps('one_node'), 4),
      three_nodes_over_one_node_per_rep: (rounds.get('three_nodes') ?? []).map((r, i) => ratio(r.runs_per_s, rounds.get('one_node')?.[i]?.runs_per_s ?? null, 4)),
      three_nodes_same_per_node_over_one_node: ratio(rps('three_nodes_same_per_node'), rps('one_node'), 4),
      one_node_cluster_over_single_node: ratio(rps('one_node'), rps('single_node_postgresql'), 4),
    },
    event_latency: measured.latency!,
    takeover: takeovers,
    node_start_failures: startFailures,
    markdown: '',
  };
  report.markdown = renderClusterMarkdown(report);
  return report;
}

/** A metric summed over the cluster's live nodes; null if a node does not say. */
async function sumOverNodes(cluster: Cluster, name: string, labels: Record<string, string>): Promise<number | null> {
  const values = await Promise.all(cluster.urls().map(async (url) => metricValue(await fetch(`${url}/metrics`).then((res) => res.text()), name, labels)));
  return values.some((v) => v === null) ? null : values.reduce((a, b) => a! + b!, 0);
}

/** Uses a cluster, then stops it; `failures` gets its node starts that had to be tried again. */
async function using<T>(cluster: Promise<Cluster>, failures: string[], use: (c: Cluster) => Promise<T>): Promise<T> {
  const c = await cluster;
  try {
    return await use(c);
  } finally {
    failures.push(...c.startFailures);
    await c.stop();
  }
}
