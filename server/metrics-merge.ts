/**
 * One scrape for the whole node: the front's own registry, plus the default process metrics each live
 * cell collects in its own registry and reports over IPC (`process_metrics`). Cell series get a `cell`
 * label, the cell's slot (`cell1`: its replacements report under the same one, their counters starting again at 0,
 * which rate() and increase() take as a reset), and the node's own labels (`node`, which the front's registry adds
 * to its series as default labels); the front's carry no `cell`. Only cells alive now are passed in, one per slot,
 * so the label's cardinality stays bounded by the slots however often cells die.
 */
import client from 'prom-client';
import type { ProcessMetricFamily } from '../protocol/cell-messages.js';

export interface CellProcessMetrics {
  cell: string;
  metrics: ProcessMetricFamily[];
}

export async function renderWithCells(front: client.Registry, cells: CellProcessMetrics[], nodeLabels: Record<string, string>): Promise<string> {
  const reporting = cells.filter((c) => c.metrics.length > 0);
  if (reporting.length === 0) return front.metrics();
  // Every label set is distinct (one cell per slot, and the cell label sees to that), so summing merges without combining
  // anything. prom-client's own aggregators would average or omit some default metrics instead.
  const families = [
    ((await front.getMetricsAsJSON()) as unknown as ProcessMetricFamily[]).map((f) => ({ ...f, aggregator: 'sum' })),
    ...reporting.map((c) =>
      c.metrics.map((f) => ({ ...f, aggregator: 'sum', values: f.values.map((v) => ({ ...v, labels: { ...v.labels, cell: c.cell, ...nodeLabels } })) })),
    ),
  ];
  return client.AggregatorRegistry.aggregate(families).metrics();
}
