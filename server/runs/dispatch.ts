/** Sends a run to a cell: the run and the cell record where it went, and the cell remembers its user. */
import type { CellHandle } from '../cells/cell-handle.js';
import type { Logger } from '../logger.js';
import type { RunTracer } from '../tracing/run-tracer.js';
import { assignment, runLogFields, type LiveRun } from './live-run.js';

/** A cell's idle workers retire after 30 s (Piscina's idleTimeout in workers/cell/cell-runtime.ts). */
const RECENT_USER_MS = 30_000;

export function dispatch(run: LiveRun, cell: CellHandle, log: Logger, tracer: RunTracer): void {
  run.phase = 'dispatched';
  run.dispatchedAt = Date.now();
  run.cellId = cell.id;
  run.attempt++;
  cell.runs.set(run.id, null);
  cell.lastBusyAt = Date.now();
  noteUser(cell, run.userId);
  const traceparent = tracer.dispatched(run);
  cell.send({ type: 'run', run: assignment(run, cell.scratch.open(run.id)), ...(traceparent ? { traceparent } : {}) });
  // The front's own record of dispatch order (tests read per-user FIFO from it, not from clocks).
  log.debug({ ...runLogFields(run), attempt: run.attempt }, 'run dispatched');
}

/** Remembers the user on the cell (supervisor.pick prefers it next time); forgets users idle past a worker's idle timeout. */
function noteUser(cell: CellHandle, userId: string): void {
  const now = Date.now();
  cell.recentUsers.delete(userId);
  cell.recentUsers.set(userId, now);
  // Oldest first (re-inserted on every run): drop from the front while stale.
  for (const [user, at] of cell.recentUsers) {
    if (now - at < RECENT_USER_MS) break;
    cell.recentUsers.delete(user);
  }
}
