/**
 * Memory per concurrent in-flight run: total memory of every process of a design while N runs are in
 * flight, at two levels of N; the slope between them is the marginal cost of one more concurrent run.
 * Linux PSS (shared pages split between the processes that map them) is used when available, so N node
 * processes are not charged N times for the same shared code; RSS otherwise.
 */
import fs from 'node:fs';
import { median } from '../load/stats.js';
import { connectClients, startHolds } from './driver.js';

const FINISH_TIMEOUT_MS = 30_000;

export type MemorySource = 'pss' | 'rss';

/** Memory of a set of processes: PSS when Linux gives it (else RSS), and RSS for comparison. */
export function processMemory(pids: readonly number[]): { bytes: number; rssBytes: number; source: MemorySource } | null {
  let total = 0;
  let rss = 0;
  let source: MemorySource = 'pss';
  let seen = 0;
  for (const pid of pids) {
    const pss = readKb(`/proc/${pid}/smaps_rollup`, 'Pss:');
    const rssKb = readKb(`/proc/${pid}/status`, 'VmRSS:');
    const kb = pss ?? rssKb;
    if (kb === null) continue; // the process ended between listing and reading
    if (pss === null) source = 'rss';
    total += kb * 1024;
    rss += (rssKb ?? 0) * 1024;
    seen++;
  }
  return seen ? { bytes: total, rssBytes: rss, source } : null;
}

function readKb(file: string, key: string): number | null {
  try {
    const line = fs.readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith(key));
    return line ? Number(line.slice(key.length).trim().split(/\s+/)[0]) : null;
  } catch {
    return null;
  }
}

export interface MemoryTarget {
  url: string;
  auth: 'dev-login' | 'none';
  pids(): Promise<number[]>;
  stop(): Promise<void>;
}

export interface MemoryLevel {
  level: number;
  /** Median total memory (PSS, else RSS) of the design's processes while `level` runs were in flight. */
  bytes: number | null;
  samples: number[];
  /** The same, as plain RSS (counts shared pages once per process). */
  rss_bytes: number | null;
  /** How many runs were really in flight at each sample (should equal level). */
  in_flight: number[];
  source: MemorySource | null;
}

/** Memory of the processes of `target` (sized for `level` concurrent runs) while that many runs hold. */
export async function memoryAtLevel(target: MemoryTarget, level: number, holdMs: number, reps: number): Promise<MemoryLevel> {
  // A constant number of sockets at every level, so their cost cancels out of the slope.
  const clients = await connectClients(target.url, 4, target.auth, `mem-${level}`);
  const samples: number[] = [];
  const rssSamples: number[] = [];
  const inFlight: number[] = [];
  let source: MemorySource | null = null;
  try {
    // Warm every slot once (module loads, first database connection) before measuring.
    await (await startHolds(clients, level, 50)).finished(FINISH_TIMEOUT_MS);
    for (let r = 0; r < reps; r++) {
      const holds = await startHolds(clients, level, holdMs);
      inFlight.push(await holds.allInFlight(holdMs));
      await new Promise((res) => setTimeout(res, 200));
      const m = processMemory(await target.pids());
      if (m) {
        samples.push(m.bytes);
        rssSamples.push(m.rssBytes);
        source = m.source;
      }
      await holds.finished(holdMs + FINISH_TIMEOUT_MS);
    }
  } finally {
    clients.close();
  }
  return { level, bytes: median(samples), samples, rss_bytes: median(rssSamples), in_flight: inFlight, source };
}

export const perRunBytes = (low: MemoryLevel, high: MemoryLevel, key: 'bytes' | 'rss_bytes' = 'bytes'): number | null => {
  const a = low[key];
  const b = high[key];
  return a === null || b === null || high.level === low.level ? null : Math.round((b - a) / (high.level - low.level));
};

export interface IdleWorkerMemory {
  /** Workers in the two servers measured (2 cells each); `threads` is the report's field name. */
  threads: [number, number];
  /** Median total memory (PSS, else RSS) of front and cells, idle, after every worker has served runs. */
  bytes: [number | null, number | null];
  rss_bytes: [number | null, number | null];
  /** Slope: what one more idle, warmed worker costs. */
  per_worker_bytes: number | null;
  per_worker_rss_bytes: number | null;
}

/**
 * Memory of an idle Atoll server once each of its `workers` workers has served runs (modules loaded,
 * Prisma client warm, one database connection each): measured at rest, after a pause.
 */
export async function idleMemory(target: MemoryTarget, workers: number, reps: number): Promise<{ bytes: number | null; rssBytes: number | null }> {
  const clients = await connectClients(target.url, 4, target.auth, `idle-${workers}`);
  const samples: number[] = [];
  const rssSamples: number[] = [];
  try {
    // Two rounds of holds as many as the workers: every worker serves at least one run.
    for (let round = 0; round < 2; round++) await (await startHolds(clients, workers, 100)).finished(FINISH_TIMEOUT_MS);
    for (let r = 0; r < reps; r++) {
      await new Promise((res) => setTimeout(res, 1000));
      const m = processMemory(await target.pids());
      if (m) {
        samples.push(m.bytes);
        rssSamples.push(m.rssBytes);
      }
    }
  } finally {
    clients.close();
  }
  return { bytes: median(samples), rssBytes: median(rssSamples) };
}

export function perWorker(workers: [number, number], low: { bytes: number | null; rssBytes: number | null }, high: { bytes: number | null; rssBytes: number | null }): IdleWorkerMemory {
  const slope = (a: number | null, b: number | null) => (a === null || b === null ? null : Math.round((b - a) / (workers[1] - workers[0])));
  return {
    threads: workers,
    bytes: [low.bytes, high.bytes],
    rss_bytes: [low.rssBytes, high.rssBytes],
    per_worker_bytes: slope(low.bytes, high.bytes),
    per_worker_rss_bytes: slope(low.rssBytes, high.rssBytes),
  };
}

export interface RestingMemory {
  cells: number;
  workers: number;
  /** Front and cells together, at rest after every worker served runs: PSS (else RSS), and plain RSS. */
  bytes: number | null;
  rss_bytes: number | null;
}

/** An Atoll with its default shape (`cells` × `workers` in all), at rest once each worker has served runs. */
export async function restingMemory(target: MemoryTarget, cells: number, workers: number, reps: number): Promise<RestingMemory> {
  const m = await idleMemory(target, workers, reps);
  return { cells, workers, bytes: m.bytes, rss_bytes: m.rssBytes };
}
