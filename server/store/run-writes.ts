/**
 * The front's writes on the run path, as every database implements them (sqlite/run-writes.ts,
 * postgresql/run-writes.ts): not through Prisma (its query compiler costs ~0.5 ms of CPU per query, half of the
 * front's CPU per run once), batched by a group commit, each promise settling once its write is committed.
 * Reads stay with Prisma (prisma-run-store.ts).
 */
import type { ErrorBody } from '../../protocol/errors.js';
import type { JsonValue, RunEventEnvelope, TerminalStatus } from '../../protocol/events.js';

export interface AcceptedRunRow {
  id: string;
  userId: string;
  /** Existing thread to continue, or null to create `newThreadId`. */
  threadId: string | null;
  newThreadId: string;
  agentName: string;
  input: string;
  inputText: string;
  correlationId: string | null;
  requestId: string;
  replayOf: string | null;
  firstEvent: RunEventEnvelope;
  /** Runs of this user with this correlation id accepted before it (ms since the epoch) give it up. */
  correlationSince: number;
}

export interface FinishedRunRow {
  runId: string;
  threadId: string;
  status: TerminalStatus;
  error: ErrorBody | null;
  result: JsonValue | null;
  terminal: RunEventEnvelope;
  report: string | null;
  partialText: string;
}

export interface RunWrites {
  createThread(userId: string, id: string, title: string | null, at: Date): Promise<void>;
  /** User, thread, the user's message, the run and its event 1: all or nothing, before the acknowledgement. */
  acceptRun(r: AcceptedRunRow): Promise<void>;
  /**
   * The writes of a started run name the lease that holds it (`owner`, several nodes), and fail with FencedError
   * once that lease lost it; without one (a single node) they are not fenced. SQLite is one node and ignores it.
   */
  markRunning(runId: string, cellId: string, workerId: number, startedAt: Date, attempts: number, owner?: string | null): Promise<void>;
  markRequeued(runId: string, owner?: string | null): Promise<void>;
  appendEvents(events: RunEventEnvelope[], owner?: string | null): Promise<void>;
  /** The terminal event, the run's status, error, result and report, and the answer (or the interrupted part). */
  finishRun(f: FinishedRunRow, owner?: string | null): Promise<void>;
  /**
   * What the user holds (UserStorage): the UTF-8 bytes of its events' payloads and its messages' contents, counted
   * by the writes above in the transactions that add them.
   */
  storedBytes(userId: string): Promise<number>;
  /**
   * Removes the user's thread with its messages, runs and events, and their bytes from the user's count, unless
   * a run of it is queued or running ('busy'); 'missing': no such thread of this user.
   */
  deleteThread(userId: string, threadId: string): Promise<DeletedThread>;
  /**
   * A delete of this thread asked by this user is under way here: it reads as gone to them, and their accept
   * continuing it fails with RowMissingError. Another user's DELETE of the same id changes nothing for its owner.
   */
  isDeleting(userId: string, threadId: string): boolean;
}

export type DeletedThread = 'deleted' | 'busy' | 'missing';

/** A thread the run continues was not there (deleted, or never existed): the accept fails alone. */
export class RowMissingError extends Error {
  override name = 'RowMissingError';
}

/**
 * The database refused a write of a run this node's lease no longer holds (several nodes: another node took the
 * run over while this one was paused or cut off). The write is not applied; the run is no longer this node's.
 */
export class FencedError extends Error {
  override name = 'FencedError';
}

/** The user already has a run with this correlation id (accepted concurrently, here or on another node). */
export class CorrelationTakenError extends Error {
  override name = 'CorrelationTakenError';
  constructor(
    readonly userId: string,
    readonly correlationId: string,
  ) {
    super('a run with this correlation id was accepted concurrently');
  }
}

/**
 * Agent text stored as a plain text column (the answer, an error's message), the same on every database:
 * PostgreSQL's text cannot hold NUL (the write would fail), so NUL becomes U+FFFD everywhere. JSON columns need
 * nothing: JSON.stringify escapes it.
 */
export const storableText = (text: string): string => (text.includes('\u0000') ? text.replace(/\u0000/g, '\uFFFD') : text);

/** What the assistant's message holds for a finished run, or null when it leaves none. */
export function answerOf(f: Pick<FinishedRunRow, 'status' | 'result' | 'partialText'>): { content: string; status: 'complete' | 'interrupted' } | null {
  if (f.status === 'completed' && f.result !== null) return { content: storableText(typeof f.result === 'string' ? f.result : JSON.stringify(f.result)), status: 'complete' };
  if (f.status !== 'completed' && f.partialText.length > 0) return { content: storableText(f.partialText), status: 'interrupted' };
  return null;
}
