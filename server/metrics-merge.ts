/**
 * One scrape for the whole node: the front's own registry, plus the default process metrics each live
 * cell collects in its own registry and reports over IPC (`process_metrics`). Cell series get a `cell`
 * label and the node's own labels (`node`, which the front's registry adds to its series as default
 * labels); the front's carry no `cell`. Only cells alive now are passed in, so a dead cell's series disappear
 * with it and the label's cardinality stays bounded by the cells that exist.
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
  // Every label set is distinct (the cell label sees to that), so summing merges without combining
  // anything. prom-client's own aggregators would average or omit some default metrics instead.
  const families = [
    ((await front.getMetricsAsJSON()) as unknown as ProcessMetricFamily[]).map((f) => ({ ...f, aggregator: 'sum' })),
    ...reporting.map((c) =>
      c.metrics.map((f) => ({ ...f, aggregator: 'sum', values: f.values.map((v) => ({ ...v, labels: { ...v.labels, cell: c.cell, ...nodeLabels } })) })),
    ),
  ];
  return client.AggregatorRegistry.aggregate(families).metrics();
}
