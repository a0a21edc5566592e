/**
 * The cluster bench's throughput rows: the bench's own workload (steps.mjs, closed-loop socket clients) through
 * one node and through three, the clients dealt round robin over the nodes, plus the same single node without
 * REDIS_URL.
 *
 * The budget on 2 cores: one node is Atoll's default, 2 cells × 2 threads. Three nodes cannot split 2 cells, and a
 * node has at least one cell, so the headline three-node row gives each node 1 cell × 2 threads (3 cells and 6
 * threads in all, 3 fronts): the smallest node, and the closest to one default node's 2 cells. The second
 * three-node row runs three default nodes (6 cells, 12 threads): what adding two nodes unchanged does.
 */

export type ClusterVariantKey = 'single_node_postgresql' | 'one_node' | 'three_nodes' | 'three_nodes_same_per_node';

export interface ClusterVariant {
  key: ClusterVariantKey;
  label: string;
  nodes: number;
  cells: number;
  threads: number;
  /** REDIS_URL set. */
  cluster: boolean;
  /** Skipped by --quick (its code path is the three_nodes row's). */
  full: boolean;
}

export const CLUSTER_VARIANTS: readonly ClusterVariant[] = [
  { key: 'single_node_postgresql', label: 'one node, no REDIS_URL (single-node mode on PostgreSQL)', nodes: 1, cells: 2, threads: 2, cluster: false, full: false },
  { key: 'one_node', label: 'one node, cluster mode', nodes: 1, cells: 2, threads: 2, cluster: true, full: false },
  { key: 'three_nodes', label: 'three nodes, 1 cell × 2 threads each', nodes: 3, cells: 1, threads: 2, cluster: true, full: false },
  { key: 'three_nodes_same_per_node', label: 'three nodes, 2 cells × 2 threads each', nodes: 3, cells: 2, threads: 2, cluster: true, full: true },
];

/** The variant whose cluster also serves the event-latency and the first takeover measurements. */
export const SHARED_VARIANT: ClusterVariantKey = 'three_nodes';
