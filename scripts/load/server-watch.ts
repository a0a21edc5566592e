/**
 * The server's own view during the load: /metrics scraped before, at a fixed pace during (bounded by the
 * phases it watches), and after. Atoll's event-loop lag gauge is the p99 since the previous scrape.
 */
import { performance } from 'node:perf_hooks';
import { sampleFromMetrics, type ServerSample } from './prom.js';
import { messageOf } from '../../protocol/errors.js';

export interface ServerReport {
  available: boolean;
  error: string | null;
  before: ServerSample | null;
  during: { samples: number; max: Partial<ServerSample>; mean: Partial<ServerSample> } | null;
  after: ServerSample | null;
  /** Counter increases between before and after (only this load's, if nothing else used the server). */
  deltas: { runs_finished: number | null; events_relayed: number | null; cell_deaths: number | null };
  series: ServerSample[];
}

const NUMERIC: (keyof ServerSample)[] = [
  'front_rss_bytes', 'front_heap_used_bytes', 'event_loop_lag_p99_s', 'scrape_ms', 'cells_rss_bytes', 'cells_heap_bytes', 'runs_active', 'runs_queued', 'threads_alive', 'cells_alive',
];

/** `metricsToken`: the server's METRICS_TOKEN, when it asks for one. */
export function createServerWatch(url: string, everyMs: number, timeoutMs: number, metricsToken: string | null = null) {
  const headers: Record<string, string> = metricsToken ? { authorization: `Bearer ${metricsToken}` } : {};
  const t0 = performance.now();
  let error: string | null = null;
  const scrape = async (): Promise<ServerSample | null> => {
    try {
      const asked = performance.now();
      const res = await fetch(`${url}/metrics`, { headers, signal: AbortSignal.timeout(timeoutMs) });
      if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}`);
      const text = await res.text();
      const now = performance.now();
      return sampleFromMetrics(text, now - t0, now - asked);
    } catch (err) {
      error = messageOf(err);
      return null;
    }
  };
  let before: ServerSample | null = null;
  const series: ServerSample[] = [];
  let timer: NodeJS.Timeout | null = null;
  let inFlight: Promise<unknown> = Promise.resolve();

  return {
    async before() {
      before = await scrape();
    },
    /** Samples until stop(); each scrape waits for the previous one, so a slow server is never piled on. */
    start() {
      timer = setInterval(() => {
        inFlight = inFlight.then(async () => {
          const s = await scrape();
          if (s) series.push(s);
        });
      }, everyMs);
    },
    /** Stops sampling with one last sample, so even a load shorter than the period has a "during". */
    async stop() {
      if (timer) clearInterval(timer);
      await inFlight;
      const last = await scrape();
      if (last) series.push(last);
    },
    async after(): Promise<ServerReport> {
      const after = await scrape();
      const delta = (k: keyof ServerSample) => (before?.[k] != null && after?.[k] != null ? (after[k] as number) - (before[k] as number) : null);
      const during = series.length
        ? {
            samples: series.length,
            max: Object.fromEntries(NUMERIC.map((k) => [k, maxOf(series, k)])),
            mean: Object.fromEntries(NUMERIC.map((k) => [k, meanOf(series, k)])),
          }
        : null;
      return {
        available: before !== null || after !== null || series.length > 0,
        error,
        before,
        during,
        after,
        deltas: { runs_finished: delta('runs_finished_total'), events_relayed: delta('events_relayed_total'), cell_deaths: delta('cell_deaths_total') },
        series,
      };
    },
  };
}

function values(series: ServerSample[], k: keyof ServerSample): number[] {
  return series.map((s) => s[k]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
}
const maxOf = (series: ServerSample[], k: keyof ServerSample) => {
  const v = values(series, k);
  return v.length ? Math.max(...v) : null;
};
const meanOf = (series: ServerSample[], k: keyof ServerSample) => {
  const v = values(series, k);
  return v.length ? Math.round((v.reduce((a, b) => a + b, 0) / v.length) * 1e6) / 1e6 : null;
};
