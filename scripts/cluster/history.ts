/**
 * The history the checker judges: what the database holds at the end (run rows, the event log, and every
 * change of a run row recorded as it happened by the audit trigger, audit.ts) and what the clients saw (each
 * request with its acknowledgement, each socket with every envelope it received). Plain data, so a test can
 * build one by hand with any violation in it (tests/unit/cluster-checker.unit.test.ts).
 */

/** A run row at the end (the `Run` table). Times are epoch ms, read as UTC. */
export interface RunRow {
  id: string;
  userId: string;
  threadId: string;
  agentName: string;
  status: string;
  errorCode: string | null;
  attempts: number;
  correlationId: string | null;
  queuedAtMs: number | null;
  startedAtMs: number | null;
  finishedAtMs: number | null;
  /** The whole row as the database gave it (for the report). */
  raw?: Record<string, unknown>;
}

/** One logged event (the `RunEvent` table). */
export interface LoggedEvent {
  runId: string;
  seq: number;
  type: string;
  eventId: string;
  payload: unknown;
  timestampMs: number;
}

/**
 * One change of a run row, in the order the audit trigger saw them (`id`, from one sequence: see audit.ts for
 * why that order is a sound witness of claims and releases). `from` is null on insert, `to` null on delete.
 */
export interface Transition {
  id: number;
  runId: string;
  userId: string;
  threadId: string;
  from: string | null;
  to: string | null;
  attempts: number | null;
  /**
   * The row's `owner` after the change (the lease of the node that claimed it, on several nodes); null when the
   * row has none, or no such column.
   */
  owner: string | null;
  atMs: number;
  /** The row after the change (before it, for a delete), for the report. */
  row?: unknown;
}

/** The wire envelope of a run event as a client received it. */
export interface Envelope {
  type: string;
  event_id: string;
  seq: number;
  run_id: string;
  thread_id: string;
  user_id: string;
  agent_name?: string;
  timestamp?: string;
  payload: any;
  /** A merged partial_result covering coalesced_from_seq..seq (a lagging socket). */
  coalesced_from_seq?: number;
}

/** One start request (socket `start_agent` or `POST /v1/threads/:id/runs`) and how it ended. */
export interface StartRequest {
  /** The checker's own id for it. */
  id: string;
  userId: string;
  via: 'socket' | 'http';
  /** NODE_ID of the node it was sent to. */
  node: string;
  correlationId: string | null;
  threadId: string | null;
  multitask: 'enqueue' | 'reject' | 'interrupt';
  agent: string;
  /** Client clock (ms) when it was sent, and when its answer arrived (null: none). */
  sentAt: number;
  answeredAt: number | null;
  /** accepted: acknowledged with a run id; refused: a coded error; lost: no answer (timeout, connection gone). */
  outcome:
    | { kind: 'accepted'; runId: string; threadId: string; deduplicated: boolean }
    | { kind: 'refused'; code: string; message: string }
    | { kind: 'lost'; reason: string };
}

export interface Delivery {
  envelope: Envelope;
  /** Client clock (ms) at arrival. */
  at: number;
  /** Received during the final catch-up (the checker's last subscribe_run pass), not during the workload. */
  final: boolean;
}

/** One socket.io connection of a client, to one node. */
export interface SocketLog {
  id: string;
  node: string;
  /** Client clock when it connected; when it closed (null: still open when the history was taken). */
  connectedAt: number;
  closedAt: number | null;
  /** Why it closed: the client chose to, or the server or the network ended it. */
  closedBy: 'client' | 'server' | null;
  received: Delivery[];
}

/**
 * A logical client of a user (a browser tab): a sequence of sockets, each resuming where the previous one was
 * with subscribe_run from the last seq it had. `follows`: the runs it started or saw an event of.
 */
export interface ClientLog {
  id: string;
  userId: string;
  sockets: SocketLog[];
  follows: string[];
  /** What went wrong on the client's side (a subscribe_run refused or unanswered…), for the report. */
  notes: string[];
}

export interface History {
  runs: RunRow[];
  events: LoggedEvent[];
  /** null: no audit was recorded (the checks that need it are skipped and said so). */
  transitions: Transition[] | null;
  requests: StartRequest[];
  clients: ClientLog[];
}

/** The deployment's limits, as the nodes were configured. */
export interface Limits {
  userMaxConcurrentRuns: number;
  maxRunAttempts: number;
  /** Agents that declared `static repeatable = false`: never run twice. */
  unrepeatableAgents: string[];
  /**
   * The run rows are the queue (several nodes: a claim is a committed change of the row), so the audit of the
   * rows witnesses caps, conversations and FIFO. A single node (no REDIS_URL) keeps its queue in memory and
   * writes a run's status after the fact, so its rows may show a finished run still running while the next
   * one starts: those checks are then skipped.
   */
  queueInDatabase: boolean;
}

export const TERMINAL_STATUSES: readonly string[] = ['completed', 'failed', 'cancelled', 'timeout'];
export const isTerminal = (status: string | null): boolean => status !== null && TERMINAL_STATUSES.includes(status);
/** A run holds a slot (its user's cap, its conversation) in any status but waiting and finished. */
export const isActive = (status: string | null): boolean => status !== null && status !== 'queued' && !isTerminal(status);

/**
 * After this change the run holds a slot: it runs, or a node claimed it and it has not started yet (several
 * nodes: the claim sets `owner` and leaves the status `queued` until its worker starts it).
 */
export const holdsSlot = (t: Pick<Transition, 'to' | 'owner'>): boolean => isActive(t.to) || (t.to === 'queued' && t.owner !== null);
