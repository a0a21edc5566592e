/** An Atoll server for the bench: its settings beside the defaults, on a fresh database of its own (dropped when it stops). */
import type { BenchDatabase } from './databases.js';
import { ATOLL_ENTRY, BENCH_AGENTS_DIR } from './paths.js';
import { startServer, type Spawned } from './spawn.js';

/**
 * The bench measures the run pipeline, not admission control: its few clients on one address would
 * otherwise meet the per-user and per-address limits (variables an older server simply ignores).
 */
export const NO_ADMISSION_LIMITS = {
  USER_MAX_CONCURRENT_RUNS: '10000',
  USER_MAX_QUEUED_RUNS: '1000000',
  RATE_LIMIT_USER_PER_SEC: '1000000',
  RATE_LIMIT_USER_BURST: '1000000',
  RATE_LIMIT_IP_PER_SEC: '1000000',
  RATE_LIMIT_IP_BURST: '1000000',
  MAX_CONNECTIONS_PER_USER: '100000',
  MAX_CONNECTIONS_PER_IP: '100000',
};

/** Every Atoll the bench starts: the limits above lifted, the bench's agents, `cells` × `threads` execution slots. */
export const atollEnv = (cells: number, threads: number, extra: Record<string, string> = {}): Record<string, string> => ({
  ...NO_ADMISSION_LIMITS,
  AGENTS_DIR: BENCH_AGENTS_DIR,
  CELLS: String(cells),
  THREADS_PER_CELL: String(threads),
  ...extra,
});

export async function startAtoll(db: BenchDatabase, cells: number, threads: number, extra: Record<string, string> = {}, nodeArgs: string[] = []): Promise<Spawned> {
  const scratch = await db.scratch();
  try {
    const s = await startServer(ATOLL_ENTRY, atollEnv(cells, threads, { ...scratch.env, ...extra }), [], { nodeArgs });
    return { ...s, stop: () => s.stop().finally(() => scratch.drop()) };
  } catch (err) {
    await scratch.drop();
    throw err;
  }
}
