/**
 * What each part of the front is handed of the one validated Config (server/config.ts): picked by name,
 * never copied field by field. A new setting is a Config field, named in the view of the part that uses it
 * (a cell's view is protocol/cell-messages.ts's CELL_SETTINGS: it crosses to the cells).
 */
import { CELL_SETTINGS, type CellConfig } from '../protocol/cell-messages.js';
import { pick } from '../protocol/pick.js';
import type { Config } from './config.js';

/** What every serving cell is told at init; the supervisor adds each cell's id (and the quarantine cell's own). */
export function cellConfigOf(config: Config, dbProvider: CellConfig['dbProvider']): Omit<CellConfig, 'cellId'> {
  return { ...pick(config, CELL_SETTINGS), dbProvider, quarantine: false };
}

/** The run service's settings: admission limits, attempts, and the deadlines it keeps. */
export const RUN_SERVICE_SETTINGS = ['maxQueuedRuns', 'userMaxConcurrentRuns', 'userMaxQueuedRuns', 'maxRunAttempts', 'runTimeoutMs', 'cancelGraceMs'] as const satisfies readonly (keyof Config)[];
export type RunServiceSettings = Pick<Config, (typeof RUN_SERVICE_SETTINGS)[number]>;

export function runServiceConfigOf(config: Config): RunServiceSettings {
  return pick(config, RUN_SERVICE_SETTINGS);
}
