/** The bench's JSON report. */
import type { BenchDatabaseKind } from './databases.js';
import type { Machine } from './machine.js';
import type { IdleWorkerMemory, MemoryLevel, MemorySource } from './memory.js';
import type { RecoveryReport } from './recovery.js';
import type { VariantReport } from './variants.js';

export interface DesignMemory {
  levels: [MemoryLevel, MemoryLevel];
  /** Slope between the two levels, PSS (else RSS). */
  per_run_bytes: number | null;
  per_run_rss_bytes: number | null;
}

export interface MemoryReport {
  levels: [number, number];
  source: MemorySource | null;
  atoll: DesignMemory;
  process_per_run: DesignMemory;
  in_process: DesignMemory;
  /** Atoll at rest: what one more idle, warmed worker costs. */
  atoll_idle_worker: IdleWorkerMemory;
}

export type MaxRunsPerWorkerReport = VariantReport & {
  /** Distinct workers over a sample of runs: with one worker per run they are all distinct. */
  distinct_workers: { runs: number; workers: number };
  default_distinct_workers: { runs: number; workers: number };
  /** null when the sample cannot tell (fewer sampled runs than the default's workers). */
  honoured: boolean | null;
};

export interface BenchReport {
  tool: 'atoll-bench';
  version: 1;
  quick: boolean;
  started_at: string;
  finished_at: string;
  duration_s: number;
  machine: Machine;
  /** databases: Atoll's rows on each (the plain atoll* keys on the first; *_postgresql keys with both); postgresql: its server, password masked. */
  settings: { databases: BenchDatabaseKind[]; postgresql: string | null; reps: number; runs: number; limit_runs: number; round_s: number; warmup: number; warmup_s: number; clients: number; inflight: number; slots: number; hold_ms: number };
  throughput: {
    limit_piscina: VariantReport;
    atoll: VariantReport;
    /** Threads shared by every user (the wall between users off): what THREAD_REUSE=same_user costs. */
    atoll_thread_reuse_any: VariantReport;
    atoll_max_runs_per_worker_1: MaxRunsPerWorkerReport;
    in_process: VariantReport;
    process_per_run: VariantReport;
    /** With --database both: the same Atoll rows on PostgreSQL. */
    atoll_postgresql?: VariantReport;
    atoll_thread_reuse_any_postgresql?: VariantReport;
    atoll_max_runs_per_worker_1_postgresql?: MaxRunsPerWorkerReport;
  };
  ratios: {
    atoll_over_limit: number | null;
    atoll_over_in_process: number | null;
    atoll_over_process_per_run: number | null;
    max_runs_per_worker_1_over_default: number | null;
    thread_reuse_any_over_default: number | null;
    /** With --database both: each Atoll row's runs/s on PostgreSQL over the same row's on SQLite. */
    postgresql_over_sqlite?: { atoll: number | null; thread_reuse_any: number | null; max_runs_per_worker_1: number | null };
  };
  memory: MemoryReport;
  recovery: RecoveryReport;
  markdown: string;
}
