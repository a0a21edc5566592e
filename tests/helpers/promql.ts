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
