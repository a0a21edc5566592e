/**
 * Recent failures by code from the `atoll_runs_finished_total{status,code}` counters: the total since
 * the server started, and the increase over a sliding window of the samples this page has taken.
 */
import type { Sample } from './prom';

export interface FailureRow {
  code: string;
  total: number;
  recent: number;
}

export type Counts = Map<string, number>;

export function failureCounts(samples: Sample[]): Counts {
  const counts: Counts = new Map();
  for (const s of samples) {
    if (s.name !== 'atoll_runs_finished_total' || s.labels.status === 'completed') continue;
    const code = s.labels.code && s.labels.code !== 'none' ? s.labels.code : s.labels.status ?? 'unknown';
    counts.set(code, (counts.get(code) ?? 0) + s.value);
  }
  return counts;
}

export function createFailureWindow(windowMs: number) {
  const history: { at: number; counts: Counts }[] = [];
  return {
    /** Adds a scrape and returns the rows, most recent failures first. */
    add(at: number, counts: Counts): FailureRow[] {
      history.push({ at, counts });
      while (history.length > 1 && history[0].at < at - windowMs) history.shift();
      const base = history[0].counts;
      return [...counts.entries()]
        .map(([code, n]) => ({ code, total: n, recent: Math.max(0, n - (base.get(code) ?? 0)) }))
        .sort((a, b) => b.recent - a.recent || b.total - a.total || a.code.localeCompare(b.code));
    },
  };
}
