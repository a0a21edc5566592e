/** The limit: raw Piscina task dispatch of the same workload, no server, no database, no sockets. */
import { performance } from 'node:perf_hooks';
import { Piscina } from 'piscina';
import { percentiles } from '../load/stats.js';
import type { DriveResult } from './driver.js';
import { PISCINA_TASK } from './paths.js';

export async function withPiscina<T>(threads: number, use: (pool: Piscina) => Promise<T>): Promise<T> {
  const pool = new Piscina({
    filename: PISCINA_TASK,
    minThreads: threads,
    maxThreads: threads,
    idleTimeout: 60_000,
    atomics: 'disabled',
    concurrentTasksPerWorker: 1,
  });
  try {
    return await use(pool);
  } finally {
    await pool.destroy();
  }
}

/** `total` tasks (fewer if maxMs runs out), `inflight` submitted at a time. */
export async function piscinaRound(pool: Piscina, agentFile: string, total: number, inflight: number, maxMs: number): Promise<DriveResult> {
  const latencies: number[] = [];
  let next = 0;
  let failed = 0;
  const t0 = performance.now();
  const stopAt = t0 + maxMs;
  const lane = async () => {
    while (next < total && performance.now() < stopAt) {
      const i = next++;
      const start = performance.now();
      try {
        await pool.run({ agentFile, runId: `limit-${i}`, text: `bench ${i}` });
        latencies.push(performance.now() - start);
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: inflight }, lane));
  const duration = performance.now() - t0;
  return {
    runs: next,
    completed: latencies.length,
    failed,
    failed_codes: failed ? { TASK_ERROR: failed } : {},
    duration_ms: Math.round(duration),
    runs_per_s: Math.round((latencies.length / (duration / 1000)) * 100) / 100,
    latency_ms: percentiles(latencies),
    run_refs: [],
  };
}
