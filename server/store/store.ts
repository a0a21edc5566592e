/**
 * The store: what Atoll keeps durably (threads, their messages, runs and each run's event log) as one
 * declared interface, so the run service, the HTTP routes and the sockets never see which database holds it.
 * One implementation per folder (sqlite/ today). Every query that takes a user id filters by it, so another
 * user's ids behave exactly like unknown ones. Every write's promise settles once it is committed: a read
 * issued after it sees it, and an acknowledgement sent after it means "on disk".
 */
import type { AgentInput } from '../../protocol/cell-messages.js';
import type { ErrorBody } from '../../protocol/errors.js';
import type { JsonValue, RunEventEnvelope, RunStatus, TerminalStatus } from '../../protocol/events.js';
import type { IsolationReport } from '../../protocol/views.js';
import type { DeletedThread } from './run-writes.js';

export interface RunRecord {
  id: string;
  threadId: string;
  userId: string;
  agentName: string;
  input: AgentInput;
  correlationId: string | null;
  requestId: string;
  status: RunStatus;
  error: ErrorBody | null;
  result: JsonValue | null;
  queuedAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  cellId: string | null;
  workerId: number | null;
  attempts: number;
  report: IsolationReport | null;
  /** The run this one replays (POST /v1/runs/:id/replay), or null. */
  replayOf: string | null;
}

export type { IsolationReport } from '../../protocol/views.js';

export interface ThreadRecord {
  id: string;
  userId: string;
  title: string | null;
  createdAt: Date;
  updatedAt: Date;
}

/** Where a page of threads ended: its last thread's time and id (`threadId` null: only a time). */
export interface ThreadCursor {
  updatedAt: Date;
  threadId: string | null;
}

export interface MessageRecord {
  id: number;
  threadId: string;
  runId: string | null;
  role: 'user' | 'assistant' | 'tool';
  content: string;
  status: 'complete' | 'interrupted';
  createdAt: Date;
}

export interface NewRun {
  id: string;
  userId: string;
  /** null: create a new thread with id newThreadId */
  threadId: string | null;
  newThreadId: string;
  agentName: string;
  input: AgentInput;
  correlationId: string | null;
  requestId: string;
  firstEvent: RunEventEnvelope<'message_received'>;
  /** Set when the run replays an earlier run of the same user. */
  replayOf?: string | null;
  /**
   * The idempotency window's start (ms since the epoch): a correlation id is unique per user, and an earlier
   * run's, accepted before this, is given up to the new run. A run of the window holding it fails the accept
   * with CorrelationTakenError (run-writes.ts).
   */
  correlationSince: number;
}


export interface RunStore {
  /** Answers once the database does (GET /health). */
  ping(): Promise<void>;
  createThread(userId: string, id: string, title: string | null): Promise<ThreadRecord>;
  findThread(userId: string, threadId: string): Promise<ThreadRecord | null>;
  /**
   * Removes the user's thread, its messages, runs and events, and takes their bytes off what the user stores; not
   * while a run of it is queued or running ('busy'). 'missing': the user has no such thread.
   */
  deleteThread(userId: string, threadId: string): Promise<DeletedThread>;
  /** What the user stores, in bytes: its events' payloads and its messages' contents (USER_MAX_STORED_BYTES). */
  storedBytes(userId: string): Promise<number>;
  /**
   * The user's threads, most recently updated first (then by id, descending), those after `before` in that order
   * when given: updated before its time, or at its time with a lower id (`threadId` null: before its time only).
   */
  listThreads(userId: string, limit: number, before: ThreadCursor | null): Promise<ThreadRecord[]>;
  /** A thread's messages in order, after the cursor (a message id); `maxBytes` as for listEvents (their content). */
  listMessages(threadId: string, limit: number, afterId: number, maxBytes?: number): Promise<MessageRecord[]>;
  /**
   * How many of a thread's messages after `afterId` (past the first `offset`, at most `limit`) fit in `maxBytes` of
   * content, at least one when there is one: the rows ctx.db's `messages.list` may have (worker-query-gate.ts). Reads
   * their stored sizes only.
   */
  messagesFitting(threadId: string, afterId: number, offset: number, limit: number, maxBytes: number): Promise<number>;
  /** Persists the request before it is acknowledged: user, thread, the user's message, the run, event 1. */
  acceptRun(r: NewRun): Promise<RunRecord>;
  /** `owner`: the lease holding the run (several nodes: a write fails with FencedError once it lost the run). */
  markRunning(runId: string, cellId: string, workerId: number, startedAt: Date, attempts: number, owner?: string | null): Promise<void>;
  /** Back to queued after its cell died under it (it will be run again). */
  markRequeued(runId: string, owner?: string | null): Promise<void>;
  appendEvents(events: RunEventEnvelope[], owner?: string | null): Promise<void>;
  /** The terminal write, all or nothing: status, error, result, the agent_completed event and the answer. */
  finishRun(
    runId: string,
    threadId: string,
    status: TerminalStatus,
    error: ErrorBody | null,
    result: JsonValue | null,
    terminal: RunEventEnvelope<'agent_completed'>,
    report: IsolationReport | null,
    /** What the run streamed before it ended without completing: stored as an interrupted answer. */
    partialText: string,
    owner?: string | null,
  ): Promise<void>;
  /** The user's run with this correlation id accepted since `since` (ms since the epoch), for idempotency. */
  findRunByCorrelation(userId: string, correlationId: string, since: number): Promise<RunRecord | null>;
  findRun(userId: string, runId: string): Promise<RunRecord | null>;
  /**
   * The newest `limit` of the user's runs accepted since `since`, oldest first (catching up sockets after a bus
   * gap: the runs missed are the newest; a socket connected for long has had more than `limit` before them).
   */
  listRunsSince(userId: string, since: Date, limit: number): Promise<RunRecord[]>;
  /**
   * A run's logged events after `afterSeq`, in seq order, at most `limit`. With `maxBytes`: no more than it takes
   * for their payloads to pass `maxBytes` (at least two), for a caller that cuts its page at `maxBytes`: it reads
   * about a page from the database, not `limit` events, and when it is cut short here its own cut falls inside.
   */
  listEvents(run: RunRecord, afterSeq: number, limit: number, maxBytes?: number): Promise<RunEventEnvelope[]>;
  /** Runs a previous process left queued or running, oldest first, with the last seq each logged. */
  findUnfinishedRuns(): Promise<{ run: RunRecord; lastSeq: number }[]>;
}
