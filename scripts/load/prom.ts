/** Reads the few server figures the scripts need out of Atoll's Prometheus text (GET /metrics). */

export interface ServerSample {
  /** ms since the sampler started */
  t_ms: number;
  front_rss_bytes: number | null;
  front_heap_used_bytes: number | null;
  event_loop_lag_p99_s: number | null;
  /** How long GET /metrics took to answer in full, as the load script saw it (the scrape-time benchmark). */
  scrape_ms: number | null;
  cells_rss_bytes: number | null;
  cells_heap_bytes: number | null;
  runs_active: number | null;
  runs_queued: number | null;
  threads_alive: number | null;
  cells_alive: number | null;
  cell_deaths_total: number | null;
  runs_finished_total: number | null;
  events_relayed_total: number | null;
}

/** Sum of every sample of `name` whose labels include all of `labels`; null when there is none. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | null {
  let total = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const labelText = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`))) {
      total += Number(m[3]);
      found = true;
    }
  }
  // A labelled counter has no sample until its first increment: a declared family then reads as 0.
  if (!found && text.includes(`# TYPE ${name} `)) return 0;
  return found ? total : null;
}

export function sampleFromMetrics(text: string, tMs: number, scrapeMs: number | null = null): ServerSample {
  return {
    t_ms: Math.round(tMs),
    scrape_ms: scrapeMs === null ? null : Math.round(scrapeMs * 10) / 10,
    front_rss_bytes: metricValue(text, 'process_resident_memory_bytes'),
    front_heap_used_bytes: metricValue(text, 'nodejs_heap_size_used_bytes'),
    event_loop_lag_p99_s: metricValue(text, 'atoll_event_loop_lag_seconds'),
    cells_rss_bytes: metricValue(text, 'atoll_cell_memory_bytes', { kind: 'rss' }),
    cells_heap_bytes: metricValue(text, 'atoll_cell_memory_bytes', { kind: 'heap' }),
    runs_active: metricValue(text, 'atoll_runs_active'),
    runs_queued: metricValue(text, 'atoll_runs_queued'),
    threads_alive: metricValue(text, 'atoll_threads_alive'),
    cells_alive: metricValue(text, 'atoll_cells_alive'),
    cell_deaths_total: metricValue(text, 'atoll_cell_deaths_total'),
    runs_finished_total: metricValue(text, 'atoll_runs_finished_total'),
    events_relayed_total: metricValue(text, 'atoll_events_relayed_total'),
  };
}
