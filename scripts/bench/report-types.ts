/** The bench's JSON reports: the default run's, and --cluster's. */
import type { ClusterVariantKey } from './cluster-throughput.js';
import type { BenchDatabaseKind } from './databases.js';
import type { EventLatencyReport } from './event-latency.js';
import type { Machine } from './machine.js';
import type { ChaosComparison } from './half-peak.js';
import type { IdleWorkerMemory, MemoryLevel, MemorySource, RestingMemory } from './memory.js';
import type { PacedPhase } from './paced.js';
import type { RecoveryReport } from './recovery.js';
import type { StartupReport } from './startup.js';
import type { TakeoverReport } from './takeover.js';
import type { TargetRow } from './targets.js';
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
  /** Atoll with its default shape (2 cells × 2 workers), front and cells at rest after serving runs. */
  atoll_at_rest: RestingMemory;
}

/** Atoll under an open-loop load at half the runs/s of its own throughput row (scripts/bench/half-peak.ts). */
export interface HalfPeakReport {
  share_of_peak: number;
  /** Healthy runs only, default config, on each database (null: its throughput row had no runs/s). */
  atoll: PacedPhase | null;
  atoll_postgresql?: PacedPhase | null;
  /** On the first database: healthy runs with and without a share of chaos runs. */
  chaos: ChaosComparison | null;
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
  settings: { databases: BenchDatabaseKind[]; postgresql: string | null; reps: number; runs: number; limit_runs: number; round_s: number; warmup: number; warmup_s: number; clients: number; inflight: number; slots: number; hold_ms: number; paced_s: number };
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
  /** `npm start` on the built tree to `listening` (issue 15). */
  startup: StartupReport;
  half_peak: HalfPeakReport;
  /** Issue 16's targets, each with its figure from this report. */
  targets: TargetRow[];
  markdown: string;
}

/** One throughput row of `--cluster`: a variant's figures and its shape. */
export type ClusterThroughputRow = VariantReport & {
  nodes: number;
  cells_per_node: number;
  threads_per_node: number;
  /** REDIS_URL set (cluster mode); false: the single-node mode on PostgreSQL. */
  cluster: boolean;
  /**
   * Worker threads retired to serve another user (THREAD_REUSE=same_user), over all nodes of the last repetition's
   * cluster, warm-up included: a node's threads serve the users whose runs it claims, wherever they connect.
   */
  worker_recycles_user_switch: number | null;
  /** Worker threads alive over all nodes of the last repetition's cluster once measured (atoll_threads_alive). */
  threads_alive_after: number | null;
  /**
   * Leases the last repetition's nodes lost (atoll_node_leases_lost_total; target 0): a node that could not renew
   * in time gives its runs up, and they run again elsewhere. null: not a cluster.
   */
  leases_lost: number | null;
};

/** `npm run bench -- --cluster`'s JSON report. */
export interface ClusterBenchReport {
  tool: 'atoll-bench';
  mode: 'cluster';
  version: 1;
  quick: boolean;
  started_at: string;
  finished_at: string;
  duration_s: number;
  machine: Machine;
  /** postgresql: its server, password masked. lease_ms: NODE_LEASE_MS of the throughput and latency nodes. */
  settings: { postgresql: string; redis: string; reps: number; runs: number; round_s: number; warmup: number; warmup_s: number; clients: number; inflight: number; lease_ms: number; latency_runs: number; takeover_rounds: number; takeover_lease_ms: number[] };
  /** Keys: see scripts/bench/cluster-throughput.ts (a --quick run skips three_nodes_same_per_node). */
  throughput: Partial<Record<ClusterVariantKey, ClusterThroughputRow>>;
  ratios: {
    /** The goal: at least 0.9. Ratios of the rows' medians. */
    three_nodes_over_one_node: number | null;
    /** The same, repetition by repetition (each pair measured minutes apart at most). */
    three_nodes_over_one_node_per_rep: (number | null)[];
    three_nodes_same_per_node_over_one_node: number | null;
    /** What cluster mode itself costs on one node. */
    one_node_cluster_over_single_node: number | null;
  };
  event_latency: EventLatencyReport;
  /** One per --takeover-lease-ms, in that order. */
  takeover: TakeoverReport[];
  /** Node starts that failed and were tried again (node: reason): a starved machine, not a measurement. */
  node_start_failures: string[];
  markdown: string;
}

/** Any field may be missing: a report written by an older bench (--compare reads those too). */
export type DeepPartial<T> = T extends (infer U)[] ? DeepPartial<U>[] : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> | null } : T;
export type LooseBenchReport = DeepPartial<BenchReport>;
