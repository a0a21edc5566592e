/**
 * The operations view's composition root: polls /metrics every 2 s and shows what is alive, what is
 * running and waiting, recent failures by code, and the isolation figures. Reads nothing but /metrics (with the
 * metrics token, on a server that asks for one).
 */
import { byId, h, replace } from '../shared/dom';
import { createFailureWindow, failureCounts } from './failures';
import { createMetricsToken, tokenHeaders } from './metrics-token';
import { parseMetrics, total } from './prom';

const POLL_MS = 2000;
const WINDOW_MS = 5 * 60_000;

const GAUGES: { id: string; metric: string; format?: (n: number) => string }[] = [
  { id: 'cells-alive', metric: 'atoll_cells_alive' },
  { id: 'threads-alive', metric: 'atoll_threads_alive' },
  { id: 'threads-busy', metric: 'atoll_threads_busy' },
  { id: 'runs-active', metric: 'atoll_runs_active' },
  { id: 'runs-queued', metric: 'atoll_runs_queued' },
  { id: 'sockets', metric: 'atoll_socket_connections' },
  { id: 'isolation-score', metric: 'atoll_request_isolation_score', format: (n) => `${(n * 100).toFixed(n === 1 ? 0 : 2)}%` },
  { id: 'containment-rate', metric: 'atoll_failure_containment_rate', format: (n) => `${(n * 100).toFixed(n === 1 ? 0 : 2)}%` },
];

function startOpsPage(): void {
  const status = byId('ops-status');
  const failuresBody = byId('failures-body');
  const recent = createFailureWindow(WINDOW_MS);
  const startedAt = Date.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let inFlight = false;
  // A token just given is tried at once rather than at the next poll (or right after the poll on its way).
  const token = createMetricsToken(sessionStorage, () => {
    if (inFlight) return;
    clearTimeout(timer);
    void poll();
  });

  async function poll(): Promise<void> {
    inFlight = true;
    const sent = token.current();
    try {
      const res = await fetch('/metrics', { cache: 'no-store', headers: tokenHeaders(sent) });
      if (res.status === 401) {
        token.refused(sent);
        throw new Error('the metrics token is missing or wrong');
      }
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const samples = parseMetrics(await res.text());
      for (const g of GAUGES) {
        const value = total(samples, g.metric);
        const el = byId(g.id);
        el.textContent = Number.isNaN(value) ? '–' : g.format ? g.format(value) : String(value);
        el.closest('.card')?.classList.toggle('bad', (g.id === 'isolation-score' || g.id === 'containment-rate') && value < 1);
      }
      const rows = recent.add(Date.now(), failureCounts(samples));
      replace(
        failuresBody,
        ...(rows.length
          ? rows.map((r) => h('tr', { 'data-code': r.code }, h('th', { scope: 'row', text: r.code }), h('td', { text: r.recent }), h('td', { text: r.total })))
          : [h('tr', {}, h('td', { colspan: 3, class: 'muted', text: 'No failed run since the server started.' }))]),
      );
      const span = Math.min(WINDOW_MS, Date.now() - startedAt);
      byId('window-note').textContent = `"Recent" counts the last ${Math.max(1, Math.round(span / 60_000))} min (at most 5) since this page opened.`;
      status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
      status.dataset.state = 'online';
    } catch (err) {
      status.textContent = `Metrics unavailable (${(err as Error).message}); retrying every ${POLL_MS / 1000} s.`;
      status.dataset.state = 'offline';
    } finally {
      inFlight = false;
      // A token given during this poll is tried at once.
      const given = token.current();
      timer = setTimeout(() => void poll(), given !== null && given !== sent ? 0 : POLL_MS);
    }
  }
  void poll();
}

startOpsPage();
