/**
 * The error a stopped run ends with (TIMEOUT or CANCELLED), whichever process ended it: its worker (the agent
 * honoured ctx.signal), its cell (the worker was terminated after CANCEL_GRACE_MS), or the front (the cell
 * did not settle it, it never started, the server shut down, or its cell died meanwhile). One builder, so a
 * TIMEOUT reads the same wherever it was decided. What decides each ending: server/runs/deadlines.ts.
 */
import type { ErrorBody } from './errors.js';

/** Why a run was asked to stop: its user, a double-text interrupt or shutdown (cancelled), or its deadline (timeout). */
export type StopReason = 'cancelled' | 'timeout';

/** How a stopped run ended. */
export type StopEnding =
  /** The agent honoured ctx.signal (the worker reports it). */
  | 'agent'
  /** It did not, and its worker was terminated (the cell). */
  | 'terminated'
  /** It was stopped while it waited for a worker (the front). */
  | 'not_started'
  /** Its cell did not settle it in time: the front did (and kills the cell if it stays wedged). */
  | 'front'
  /** The server shut down before it ended (the front). */
  | 'shutdown'
  /** Its cell died after the stop was asked (the front, judged in server/runs/cell-death.ts). */
  | { cellEnded: string };

export function stopCode(reason: StopReason): 'TIMEOUT' | 'CANCELLED' {
  return reason === 'timeout' ? 'TIMEOUT' : 'CANCELLED';
}

export function stopMessage(reason: StopReason, ending: StopEnding): string {
  if (typeof ending === 'object') return `the run was stopped (its cell ended: ${ending.cellEnded})`;
  if (reason === 'timeout') {
    const budget = 'the run exceeded its time budget (RUN_TIMEOUT_MS)';
    if (ending === 'terminated') return `${budget} and its worker was terminated`;
    if (ending === 'front') return `${budget}; its cell did not end it, the front did`;
    return budget;
  }
  switch (ending) {
    case 'agent':
    case 'front':
      return 'the run was stopped';
    case 'terminated':
      return 'the run was stopped and its thread terminated';
    case 'not_started':
      return 'the run was stopped before it started';
    case 'shutdown':
      return 'the server shut down';
  }
}

export function stopError(reason: StopReason, ending: StopEnding): ErrorBody {
  return { code: stopCode(reason), message: stopMessage(reason, ending) };
}
