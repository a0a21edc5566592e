/**
 * Agent code may kill its own cell (README, threat model), and each replacement is a new generation of its slot
 * (`cell1-g2`). Metrics name the slot, not the generation: labelled by generation, every death minted a new `cell`
 * and `process` label value (~84 Prometheus series each), and a user looping `abort` made ~10 a minute. The
 * generation stays in the logs and in atoll_cell_generation, one series per slot.
 */
import { startServer, type TestServer } from './helpers/server';
import { UserClient, eventually, metricValue, terminal } from './helpers/client';

const KILLS = 4;
// CELLS=1 and QUARANTINE_CELLS=1: one serving slot, one for suspects, one for the cell killers.
const SLOTS = 3;

async function scrape(server: TestServer): Promise<string> {
  return (await fetch(`${server.url}/metrics`)).text();
}

function cellLabels(text: string): Set<string> {
  return new Set([...text.matchAll(/\b(?:cell|process)="((?:cell|quarantine)[^"]*)"/g)].map((m) => m[1]!));
}

test(`${KILLS} cell deaths mint no new cell label values`, async () => {
  const server = await startServer({ ENABLE_CHAOS_AGENTS: '1', CELLS: '1', THREADS_PER_CELL: '1', QUARANTINE_CELLS: '1' });
  const seen = new Set<string>();
  let last = '';
  try {
    cellLabels(await scrape(server)).forEach((l) => seen.add(l));
    for (let i = 0; i < KILLS; i++) {
      // A user of its own each time: a named killer's later runs go to the cell killers' quarantine cell instead.
      const c = await UserClient.connect(server.url, `killer-${i}`);
      try {
        const { run_id } = await c.start({ agent: 'chaos', input: { mode: 'abort' } });
        expect(terminal(await c.waitForRun(run_id, 60_000)).payload.status).toBe('failed');
      } finally {
        c.close();
      }
      // The replacement is ready and reporting (cell memory comes from ready cells only).
      expect(await eventually(async () => {
        last = await scrape(server);
        cellLabels(last).forEach((l) => seen.add(l));
        const health = (await (await fetch(`${server.url}/healthz`)).json()) as { cells_ready: number };
        return health.cells_ready >= 1 && metricValue(last, 'atoll_cell_deaths_total') >= i + 1 && /^atoll_cell_memory_bytes\{/m.test(last);
      }, 30_000, 200)).toBe(true);
    }
    expect([...seen].filter((l) => !/^(?:cell|quarantine)\d+$/.test(l))).toEqual([]);
    expect(seen.size).toBeLessThanOrEqual(SLOTS);
    // The slot is not the generation: which generation serves it is still shown, as one series replaced in place.
    expect(metricValue(last, 'atoll_cell_generation', { cell: 'cell1' })).toBeGreaterThanOrEqual(KILLS + 1);
  } finally {
    await server.stop();
  }
}, 240_000);
