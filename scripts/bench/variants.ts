/** One throughput measurement per design: warm up, then --reps rounds of --runs runs; medians across rounds. */
import { performance } from 'node:perf_hooks';
import { getJson } from '../load/auth.js';
import { median } from '../load/stats.js';
import { connectClients, drive, type DriveResult } from './driver.js';
import type { BenchOptions } from './options.js';

export type Round = Omit<DriveResult, 'run_refs'>;

export interface VariantReport {
  label: string;
  rounds: Round[];
  runs_per_s: number | null;
  latency_p50_ms: number | null;
  latency_p95_ms: number | null;
  latency_p99_ms: number | null;
  /** Runs that did not complete, over every round (target 0: the workload never fails). */
  failed: number;
}

const RUN_TIMEOUT_MS = 30_000;

/** Rounds of one design (a round's run_refs, if any, left out), and their medians. */
export function summarizeRounds(label: string, results: (Round & { run_refs?: unknown })[]): VariantReport {
  const rounds = results.map(({ run_refs: _refs, ...round }) => round);
  const med = (pick: (r: Round) => number | null) => median(rounds.map(pick).filter((v): v is number => v !== null));
  return {
    label,
    rounds,
    runs_per_s: med((r) => r.runs_per_s),
    latency_p50_ms: med((r) => r.latency_ms.p50),
    latency_p95_ms: med((r) => r.latency_ms.p95),
    latency_p99_ms: med((r) => r.latency_ms.p99),
    failed: rounds.reduce((n, r) => n + r.failed, 0),
  };
}

/** The user ids of a variant's clients start with this: later phases on the same server reuse those users (and their warm workers). */
export const clientPrefix = (label: string) => label.replace(/[^A-Za-z0-9-]/g, '-');

/** `urls`: one server, or the nodes of a cluster (the clients dealt round robin over them). */
export async function socketVariant(
  label: string,
  urls: string | readonly string[],
  auth: 'dev-login' | 'none',
  opts: BenchOptions,
): Promise<{ report: VariantReport; last: DriveResult }> {
  const clients = await connectClients(urls, opts.clients, auth, clientPrefix(label));
  try {
    const shape = { inflightPerClient: opts.inflight, agent: 'steps', input: { text: 'bench' }, runTimeoutMs: RUN_TIMEOUT_MS, maxMs: opts.roundMs };
    const warmStart = performance.now();
    if (opts.warmup > 0) await drive(clients, { ...shape, total: opts.warmup });
    const left = opts.warmupMs - (performance.now() - warmStart);
    if (left > 0) await drive(clients, { ...shape, total: opts.runs, maxMs: left });
    const results: DriveResult[] = [];
    for (let r = 0; r < opts.reps; r++) results.push(await drive(clients, { ...shape, total: opts.runs }));
    return { report: summarizeRounds(label, results), last: results.at(-1)! };
  } finally {
    clients.close();
  }
}

/** How many distinct workers served a sample of runs (GET /v1/runs/:id → ran_on). */
export async function distinctWorkers(url: string, refs: DriveResult['run_refs'], sample: number): Promise<{ runs: number; workers: number }> {
  const picked = refs.slice(-sample);
  const seen = new Set<string>();
  for (const ref of picked) {
    const run = await getJson(url, `/v1/runs/${ref.run_id}`, ref.token, 5000);
    if (run.body?.ran_on) seen.add(`${run.body.ran_on.cell}/${run.body.ran_on.worker}`);
  }
  return { runs: picked.length, workers: seen.size };
}
