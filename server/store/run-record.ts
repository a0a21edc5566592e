/**
 * A Run row as every database returns it (Prisma, or pg for the shared queue's own queries), and its RunRecord;
 * an accepted run's row to write and the record it makes.
 */
import type { AgentInput } from '../../protocol/cell-messages.js';
import { inputTextOf } from '../../protocol/agent-input.js';
import type { ErrorBody } from '../../protocol/errors.js';
import type { JsonValue, RunStatus } from '../../protocol/events.js';
import type { AcceptedRunRow } from './run-writes.js';
import type { IsolationReport, NewRun, RunRecord } from './store.js';

export interface RunRow {
  id: string;
  threadId: string;
  userId: string;
  agentName: string;
  input: string;
  correlationId: string | null;
  requestId: string;
  status: string;
  errorCode: string | null;
  errorMessage: string | null;
  result: string | null;
  queuedAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  cellId: string | null;
  workerId: number | null;
  attempts: number;
  report: string | null;
  replayOf: string | null;
}

export function runRecordOf(row: RunRow): RunRecord {
  return {
    id: row.id,
    threadId: row.threadId,
    userId: row.userId,
    agentName: row.agentName,
    input: JSON.parse(row.input) as AgentInput,
    correlationId: row.correlationId,
    requestId: row.requestId,
    status: row.status as RunStatus,
    error: row.errorCode ? ({ code: row.errorCode, message: row.errorMessage ?? '' } as ErrorBody) : null,
    result: row.result === null ? null : (JSON.parse(row.result) as JsonValue),
    queuedAt: row.queuedAt,
    startedAt: row.startedAt,
    finishedAt: row.finishedAt,
    cellId: row.cellId,
    workerId: row.workerId,
    attempts: row.attempts,
    report: row.report ? (JSON.parse(row.report) as IsolationReport) : null,
    replayOf: row.replayOf,
  };
}

/** What the database writes for an accepted run (run-writes.ts). */
export function acceptedRowOf(r: NewRun): AcceptedRunRow {
  return { ...r, input: JSON.stringify(r.input), inputText: inputTextOf(r.input), replayOf: r.replayOf ?? null, correlationSince: r.correlationSince };
}

/** The record of a run just accepted, as a read would return it. */
export function acceptedRecordOf(r: NewRun): RunRecord {
  return {
    id: r.id,
    threadId: r.threadId ?? r.newThreadId,
    userId: r.userId,
    agentName: r.agentName,
    input: r.input,
    correlationId: r.correlationId,
    requestId: r.requestId,
    status: 'queued',
    error: null,
    result: null,
    queuedAt: new Date(r.firstEvent.timestamp),
    startedAt: null,
    finishedAt: null,
    cellId: null,
    workerId: null,
    attempts: 0,
    report: null,
    replayOf: r.replayOf ?? null,
  };
}
