/**
 * PromQL and Prometheus-text helpers for checking alert rules and dashboards against a live /metrics:
 * a real PromQL parser (Prometheus's own Lezer grammar), not a regex over the expression.
 */
import { parser } from '@prometheus-io/lezer-promql';

/** Grafana's built-in interval variables, replaced by a valid duration before parsing. */
const GRAFANA_INTERVALS = /\$__(rate_interval|interval|range)\b/g;

/** The metric names an expression selects, or the parse errors it has (with the text around them). */
export function promqlMetricNames(expr: string): { names: string[]; errors: string[] } {
  const text = expr.replace(GRAFANA_INTERVALS, '5m');
  const tree = parser.parse(text);
  const names = new Set<string>();
  const errors: string[] = [];
  const cursor = tree.cursor();
  do {
    if (cursor.type.isError) errors.push(`at ${cursor.from}: ${JSON.stringify(text.slice(Math.max(0, cursor.from - 20), cursor.to + 20))}`);
    if (cursor.name === 'Identifier' && cursor.node.parent?.name === 'VectorSelector') names.add(text.slice(cursor.from, cursor.to));
  } while (cursor.next());
  return { names: [...names], errors };
}

/** Metric families of a Prometheus text exposition: name → type, from its `# TYPE` lines. */
export function metricFamilies(exposition: string): Map<string, string> {
  const families = new Map<string, string>();
  for (const m of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) families.set(m[1], m[2]);
  return families;
}

/** Whether a name an expression uses is exported: a family itself, or a histogram's series. */
export function isExported(name: string, families: Map<string, string>): boolean {
  if (families.has(name)) return true;
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  return !!m && (families.get(m[1]) === 'histogram' || families.get(m[1]) === 'summary');
}

/** Functions that read a counter's increase: a series born at 1 shows none of its first count to them. */
const INCREASE_FUNCTIONS = new Set(['rate', 'irate', 'increase']);

/** The metric names an expression reads through rate(), irate() or increase() (Grafana intervals allowed). */
export function promqlIncreaseReads(expr: string): string[] {
  const text = expr.replace(GRAFANA_INTERVALS, '5m');
  const tree = parser.parse(text);
  const names = new Set<string>();
  const cursor = tree.cursor();
  do {
    if (cursor.name !== 'Identifier' || cursor.node.parent?.name !== 'VectorSelector') continue;
    const call = cursor.node.parent.parent?.name === 'MatrixSelector' ? cursor.node.parent.parent.parent?.parent : null;
    const fn = call?.name === 'FunctionCall' ? call.getChild('FunctionIdentifier') : null;
    if (fn && INCREASE_FUNCTIONS.has(text.slice(fn.from, fn.to))) names.add(text.slice(cursor.from, cursor.to));
  } while (cursor.next());
  return [...names];
}

/** The samples of one metric in a Prometheus text exposition: each series' labels and value. */
export function samplesOf(exposition: string, name: string): { labels: Record<string, string>; value: number }[] {
  const samples: { labels: Record<string, string>; value: number }[] = [];
  for (const m of exposition.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$/gm)) {
    if (m[1] !== name) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    samples.push({ labels, value: Number(m[3]) });
  }
  return samples;
}
