/**
 * What the cells said they dropped of what their workers printed past RUN_LOG_BYTES_PER_S
 * (workers/cell/print-budget.ts): a cell's own lines go to its stderr (its stdout carries what its workers print).
 */
import type { TestServer } from './server';

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
