/**
 * What each part of the front is handed of the one validated Config (server/config.ts): picked by name,
 * never copied field by field, and read by the Config's own field names. A new setting is a Config field,
 * named in the view of the part that uses it. A cell's view crosses to the cells, so its shape is declared in
 * protocol/ (CellSettings), which imports nothing of the front: the compiler checks CELL_SETTINGS against it.
 */
import type { CellConfig, CellSettings } from '../protocol/cell-messages.js';
import { pick, type Assert, type SameShape } from '../protocol/pick.js';
import type { Config } from './config.js';
import type { StoreOptions } from './store/backend.js';

/** The Config's fields every cell is handed at init (protocol/cell-messages.ts's CellSettings). */
export const CELL_SETTINGS = [
  'agentsDir',
  'enableChaosAgents',
  'workersPerCell',
  'runTimeoutMs',
  'runMemoryMb',
  'cellMemoryMb',
  'maxRunsPerWorker',
  'workerDbWarmup',
  'workerLockdown',
  'workerReuse',
  'agentEgress',
  'warmSpareWorkers',
  'cancelGraceMs',
  'limits',
  'logLevel',
  'agentSettings',
  'llmApiKey',
  'llmOperations',
] as const satisfies readonly (keyof Config)[];

/** Checked by the compiler: CELL_SETTINGS names exactly protocol's CellSettings, each of the Config's type (both ways). */
export type CellSettingsMatch = Assert<SameShape<Pick<Config, (typeof CELL_SETTINGS)[number]>, CellSettings>>;

/** What every serving cell is told at init; the supervisor adds each cell's id (and the quarantine cell's own). */
export function cellConfigOf(config: Config, dbProvider: CellConfig['dbProvider'], compiledAgents: CellConfig['compiledAgents']): Omit<CellConfig, 'cellId' | 'scratchDir'> {
  return { ...pick(config, CELL_SETTINGS), dbProvider, quarantine: false, compiledAgents };
}

/** The run service's settings: admission limits, attempts, and the deadlines it keeps. */
export const RUN_SERVICE_SETTINGS = ['maxQueuedRuns', 'userMaxConcurrentRuns', 'userMaxQueuedRuns', 'userMaxStoredBytes', 'maxRunAttempts', 'cellKillerQuarantineMs', 'runTimeoutMs', 'cancelGraceMs'] as const satisfies readonly (keyof Config)[];
export type RunServiceSettings = Pick<Config, (typeof RUN_SERVICE_SETTINGS)[number]>;

export function runServiceSettingsOf(config: Config): RunServiceSettings {
  return pick(config, RUN_SERVICE_SETTINGS);
}

/** The cell supervisor's (server/cells/supervisor.ts): how many cells, and when one is replaced. */
export const SUPERVISOR_SETTINGS = ['cells', 'quarantineCells', 'cellRecycleRssRatio', 'cellSilenceTimeoutMs'] as const satisfies readonly (keyof Config)[];
export type SupervisorSettings = Pick<Config, (typeof SUPERVISOR_SETTINGS)[number]>;

export function supervisorSettingsOf(config: Config): SupervisorSettings {
  return pick(config, SUPERVISOR_SETTINGS);
}

/** The CPU governor's (server/cells/cpu-governor.ts). */
export const CPU_GOVERNOR_SETTINGS = ['cpuDemoteAfterMs'] as const satisfies readonly (keyof Config)[];
export type CpuGovernorSettings = Pick<Config, (typeof CPU_GOVERNOR_SETTINGS)[number]>;

export function cpuGovernorSettingsOf(config: Config): CpuGovernorSettings {
  return pick(config, CPU_GOVERNOR_SETTINGS);
}

/** The HTTP app's (server/http/app.ts and its routes). */
export const HTTP_SETTINGS = ['devLogin', 'maxInputBytes', 'userMaxStoredBytes', 'corsOrigins', 'trustProxy', 'ipv6BudgetPrefix', 'httpStallTimeoutMs', 'metricsToken'] as const satisfies readonly (keyof Config)[];
export type HttpSettings = Pick<Config, (typeof HTTP_SETTINGS)[number]>;

export function httpSettingsOf(config: Config): HttpSettings {
  return pick(config, HTTP_SETTINGS);
}

/** The socket server's (server/realtime/socket-server.ts): input size, backpressure, token expiry, origins, client addresses and their engine.io connections. */
export const SOCKET_SETTINGS = [
  'maxInputBytes',
  'socketMaxBufferedPackets',
  'socketMaxBufferedBytes',
  'socketStallTimeoutMs',
  'tokenExpiryWarningMs',
  'corsOrigins',
  'trustProxy',
  'ipv6BudgetPrefix',
  'maxConnectionsPerIp',
] as const satisfies readonly (keyof Config)[];
export type SocketSettings = Pick<Config, (typeof SOCKET_SETTINGS)[number]>;

export function socketSettingsOf(config: Config): SocketSettings {
  return pick(config, SOCKET_SETTINGS);
}

/** The store's options (server/store/backend.ts): what each database implementation may need of the Config. */
export function storeOptionsOf(config: Config, log: StoreOptions['log']): StoreOptions {
  return { synchronous: config.dbSynchronous, poolSize: config.dbPoolSize, startupWaitMs: config.dbStartupWaitMs, log };
}
