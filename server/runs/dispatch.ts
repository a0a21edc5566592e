/** Sends a run to a cell: the run and the cell record where it went, and the cell notes whose run it is (user-workers.ts). */
import type { CellHandle } from '../cells/cell-handle.js';
import type { Logger } from '../logger.js';
import type { RunTracer } from '../tracing/run-tracer.js';
import { assignment, runLogFields, type LiveRun } from './live-run.js';

export function dispatch(run: LiveRun, cell: CellHandle, log: Logger, tracer: RunTracer): void {
  run.phase = 'dispatched';
  run.dispatchedAt = Date.now();
  run.cellId = cell.id;
  run.attempt++;
  cell.runs.set(run.id, null);
  cell.lastBusyAt = Date.now();
  cell.userWorkers.dispatched(run.id, run.userId);
  const traceparent = tracer.dispatched(run);
  cell.send({ type: 'run', run: assignment(run, cell.scratch.open(run.id)), ...(traceparent ? { traceparent } : {}) });
  // The front's own record of dispatch order (tests read per-user FIFO from it, not from clocks).
  log.debug({ ...runLogFields(run), attempt: run.attempt }, 'run dispatched');
}
