/** The per-process views of the one Config (server/config-views.ts, protocol's CELL_SETTINGS and WORKER_SETTINGS). */
import { CELL_SETTINGS } from '../../protocol/cell-messages';
import { pick } from '../../protocol/pick';
import { WORKER_SETTINGS } from '../../protocol/worker-messages';
import { loadConfig } from '../../server/config';
import { cellConfigOf, RUN_SERVICE_SETTINGS, runServiceConfigOf } from '../../server/config-views';

const config = loadConfig({ THREADS_PER_CELL: '3', WARM_SPARE_THREADS: '2', THREAD_REUSE: 'any', LLM_API_KEY: 'k', CANCEL_GRACE_MS: '700' }, '/srv/atoll');

test("a cell's config is its settings of the Config, by the same names and values, plus what the front adds", () => {
  const cell = cellConfigOf(config, 'sqlite');
  expect(Object.keys(cell).sort()).toEqual([...CELL_SETTINGS, 'dbProvider', 'quarantine'].sort());
  for (const key of CELL_SETTINGS) expect([key, cell[key]]).toEqual([key, config[key]]);
  expect(cell).toMatchObject({ workersPerCell: 3, warmSpareWorkers: 2, workerReuse: 'any', llmApiKey: 'k', dbProvider: 'sqlite', quarantine: false });
  // Nothing the cell is not given: the front's secrets and its own settings stay in the front.
  expect(cell).not.toHaveProperty('jwtSecret');
  expect(cell).not.toHaveProperty('databaseFile');
});

test("a worker's config is its cell's settings but the model key (the key never enters a worker)", () => {
  const worker = pick({ ...cellConfigOf(config, 'sqlite'), cellId: 'cell1-g1' }, WORKER_SETTINGS);
  expect(Object.keys(worker).sort()).toEqual([...WORKER_SETTINGS].sort());
  expect(WORKER_SETTINGS).not.toContain('llmApiKey');
  expect(worker).toMatchObject({ cellId: 'cell1-g1', workerReuse: 'any', dbProvider: 'sqlite' });
});

test("the run service's settings", () => {
  expect(runServiceConfigOf(config)).toEqual(Object.fromEntries(RUN_SERVICE_SETTINGS.map((k) => [k, config[k]])));
  expect(runServiceConfigOf(config)).toMatchObject({ cancelGraceMs: 700, maxRunAttempts: 3 });
});
