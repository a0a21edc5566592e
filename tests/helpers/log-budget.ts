/**
 * The log budget the tests give runs (RUN_LOG_BYTES_PER_S), what it lets through, and what the cells said they dropped
 * of what their workers printed past it (workers/cell/print-budget.ts): a cell's own lines go to its stderr (its
 * stdout carries what its workers print).
 */
import { LOG_BURST_SECONDS } from '../../protocol/cell-messages';
import type { TestServer } from './server';

/** RUN_LOG_BYTES_PER_S in the tests: low, so a few seconds of printing are far past it. */
export const RATE = 8192;
/** What a run may write at once. */
export const BURST = LOG_BURST_SECONDS * RATE;
/**
 * How fast a run printing past its budget may go on printing (README: "slowed to 4 MiB a second of output"): what its
 * cell receives, and drops, of it.
 */
export const DROP_RATE = 4 * 1024 * 1024;
/** The most the budget lets through in `ms`: its burst, then its rate. */
export const allowance = (ms: number) => BURST + (RATE * ms) / 1000;

export interface PrintReport {
  worker: number;
  run_id?: string;
  dropped_bytes: number;
}

export function printReports(server: TestServer): PrintReport[] {
  return server
    .stderr()
    .split('\n')
    .filter((line) => line.includes('printed past RUN_LOG_BYTES_PER_S'))
    .map((line) => JSON.parse(line) as PrintReport);
}

/** The bytes the cells dropped of what `runId` printed. */
export function droppedOf(server: TestServer, runId: string): number {
  return printReports(server).reduce((n, r) => n + (r.run_id === runId ? r.dropped_bytes : 0), 0);
}
