/** The per-process views of the one Config (server/config-views.ts, and protocol's WORKER_SETTINGS). */
import { pick } from '../../protocol/pick';
import { WORKER_SETTINGS } from '../../protocol/worker-messages';
import { loadConfig } from '../../server/config';
import {
  CELL_SETTINGS,
  cellConfigOf,
  CPU_GOVERNOR_SETTINGS,
  cpuGovernorSettingsOf,
  HTTP_SETTINGS,
  httpSettingsOf,
  RUN_SERVICE_SETTINGS,
  runServiceSettingsOf,
  SOCKET_SETTINGS,
  socketSettingsOf,
  SUPERVISOR_SETTINGS,
  supervisorSettingsOf,
} from '../../server/config-views';

const config = loadConfig({ THREADS_PER_CELL: '3', WARM_SPARE_THREADS: '2', THREAD_REUSE: 'any', LLM_API_KEY: 'k', CANCEL_GRACE_MS: '700' }, '/srv/atoll');

test("a cell's config is its settings of the Config, by the same names and values, plus what the front adds", () => {
  const compiled = [{ source: '/agents/sum.ts', module: '/cache/abc.mjs' }];
  const cell = cellConfigOf(config, 'sqlite', compiled);
  expect(Object.keys(cell).sort()).toEqual([...CELL_SETTINGS, 'dbProvider', 'quarantine', 'compiledAgents'].sort());
  expect(cell.compiledAgents).toEqual(compiled);
  for (const key of CELL_SETTINGS) expect([key, cell[key]]).toEqual([key, config[key]]);
  expect(cell).toMatchObject({ workersPerCell: 3, warmSpareWorkers: 2, workerReuse: 'any', llmApiKey: 'k', dbProvider: 'sqlite', quarantine: false });
  // Nothing the cell is not given: the front's secrets and its own settings stay in the front.
  expect(cell).not.toHaveProperty('jwtSecret');
  expect(cell).not.toHaveProperty('databaseFile');
});

test("a worker's config is its cell's settings but the model key (the key never enters a worker)", () => {
  const worker = pick({ ...cellConfigOf(config, 'sqlite', []), cellId: 'cell1-g1' }, WORKER_SETTINGS);
  expect(Object.keys(worker).sort()).toEqual([...WORKER_SETTINGS].sort());
  expect(WORKER_SETTINGS).not.toContain('llmApiKey');
  expect(worker).toMatchObject({ cellId: 'cell1-g1', workerReuse: 'any', dbProvider: 'sqlite' });
});

test("the run service's settings", () => {
  expect(runServiceSettingsOf(config)).toEqual(Object.fromEntries(RUN_SERVICE_SETTINGS.map((k) => [k, config[k]])));
  expect(runServiceSettingsOf(config)).toMatchObject({ cancelGraceMs: 700, maxRunAttempts: 3 });
});

test("the supervisor's, the CPU governor's, the HTTP app's and the socket server's settings: the Config's fields by their own names", () => {
  const views = [
    [SUPERVISOR_SETTINGS, supervisorSettingsOf(config)],
    [CPU_GOVERNOR_SETTINGS, cpuGovernorSettingsOf(config)],
    [HTTP_SETTINGS, httpSettingsOf(config)],
    [SOCKET_SETTINGS, socketSettingsOf(config)],
  ] as const;
  for (const [names, view] of views) {
    expect(view).toEqual(Object.fromEntries(names.map((k) => [k, config[k]])));
    expect(view).not.toHaveProperty('jwtSecret');
    expect(view).not.toHaveProperty('llmApiKey');
  }
  expect(supervisorSettingsOf(config)).toEqual({ cells: 2, quarantineCells: 3, cellRecycleRssRatio: 1.3, cellSilenceTimeoutMs: 30_000 });
  expect(socketSettingsOf(config)).toMatchObject({ socketMaxBufferedPackets: 1000, socketStallTimeoutMs: 30_000, corsOrigins: [] });
});
