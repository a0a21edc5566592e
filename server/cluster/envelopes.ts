/**
 * Events a node writes for a run it does not hold (run_queued while it waits in the shared queue, its terminal
 * event when it is stopped there, run_restarted or its end when its node died): numbered by the database's
 * last seq, under the run's row lock (server/store/postgresql/cluster-store.ts).
 */
import { randomUUID } from 'node:crypto';
import type { ErrorBody } from '../../protocol/errors.js';
import type { EventPayloads, RunEventEnvelope, RunEventType, TerminalStatus } from '../../protocol/events.js';
import type { FinishedRunRow } from '../store/run-writes.js';
import type { RunRecord } from '../store/store.js';

export function envelopeOf<T extends RunEventType>(run: Pick<RunRecord, 'id' | 'threadId' | 'userId' | 'agentName'>, seq: number, type: T, payload: EventPayloads[T], at = Date.now()): RunEventEnvelope<T> {
  return {
    type,
    event_id: randomUUID(),
    seq,
    run_id: run.id,
    thread_id: run.threadId,
    user_id: run.userId,
    agent_name: run.agentName,
    timestamp: new Date(at).toISOString(),
    payload,
  };
}

/** The terminal write of a run that ends where it is not running (it waited, or its node is gone). */
export function endingOf(run: RunRecord, lastSeq: number, status: Exclude<TerminalStatus, 'completed'>, error: ErrorBody): FinishedRunRow {
  const now = Date.now();
  const terminal = envelopeOf(run, lastSeq + 1, 'agent_completed', {
    status,
    success: false,
    final_response: null,
    error,
    execution_time_ms: run.startedAt ? Math.max(0, now - run.startedAt.getTime()) : 0,
  }, now);
  return { runId: run.id, threadId: run.threadId, status, error, result: null, terminal, report: null, partialText: '' };
}
