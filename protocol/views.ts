/**
 * What the HTTP API and the socket acks show of stored records (snake_case on the wire). The front builds
 * them (server/http/views.ts); the browser reads them. One definition for both.
 */
import type { ErrorBody } from './errors.js';
import type { AnyRunEventEnvelope, JsonObject, JsonValue, RunStatus } from './events.js';

/** An error as a client receives it: the code and message, and when retrying makes sense, how soon. */
export interface WireError extends ErrorBody {
  retry_after_ms?: number;
}

export interface ThreadView {
  id: string;
  title: string | null;
  created_at: string;
  updated_at: string;
}

export interface MessageView {
  id: number;
  thread_id: string;
  run_id: string | null;
  role: 'user' | 'assistant' | 'tool';
  content: string;
  status: 'complete' | 'interrupted';
  created_at: string;
}

export interface RunView {
  id: string;
  thread_id: string;
  user_id: string;
  agent: string;
  status: RunStatus;
  input: JsonValue;
  result: JsonValue | null;
  error: ErrorBody | null;
  correlation_id: string | null;
  request_id: string;
  queued_at: string;
  started_at: string | null;
  finished_at: string | null;
  ran_on: { cell: string; worker: number | null } | null;
  attempts: number;
  isolation: IsolationReport | null;
  replay_of: string | null;
}

/** GET /v1/agents: one entry per agent the cells loaded. */
export interface AgentInfo {
  name: string;
  /** false: the agent declared itself not safe to run twice (static repeatable = false). */
  repeatable: boolean;
  source: 'builtin' | 'plugin';
  description: string | null;
  /** The JSON Schema its input must match (checked at acceptance: BAD_REQUEST otherwise); null: any JSON object. */
  input: JsonObject | null;
}

/** GET /v1/meta: what the chat page must know before anyone signs in. */
export interface PageMeta {
  dev_login: boolean;
  llm_configured: boolean;
  /** MAX_INPUT_BYTES: the page refuses a longer message itself, keeping its text (past the transport's cap the socket would be cut). */
  max_input_bytes: number;
}

/** What Atoll found about a run's isolation (GET /v1/runs/:id shows it). */
export interface IsolationReport {
  leaks: Record<string, number>;
  globals: string[];
  contaminated: boolean;
  recycled: string | null;
  cleanup_ms: number | null;
  /** The run kept a core busy and was lowered in OS priority (CPU_DEMOTE_AFTER_MS). */
  cpu_demoted?: boolean;
  /** Walls the run's code ran into, once each: signal, worker, model:<code>, db:<reason>. */
  refused?: string[];
  restarts: { attempt: number; cell: string | null; reason: string }[];
}

/** GET /v1/usage: what the user stores (its events' payloads and messages' contents, UTF-8 bytes) against its cap. */
export interface UsageView {
  stored_bytes: number;
  /** USER_MAX_STORED_BYTES; null: no cap. At or past it, new runs get STORAGE_QUOTA_EXCEEDED. */
  max_stored_bytes: number | null;
}

/** GET /v1/threads */
export interface ThreadPage {
  threads: ThreadView[];
  /** Pass as `before` for the next page (an opaque cursor: the last thread's time and id); null at the end. */
  next_before: string | null;
}

/** GET /v1/threads/:id/messages */
export interface MessagePage {
  messages: MessageView[];
  /** Pass as `after` for the next page; null at the end. */
  next_after: number | null;
}

/** GET /v1/runs/:id/events */
export interface RunEventsPage {
  run_id: string;
  status: RunStatus;
  events: AnyRunEventEnvelope[];
  /** Pass as `after_seq` for the next page (a page is capped by size as well as by `limit`); null at the end of the log so far. */
  next_after_seq: number | null;
}

/** GET /v1/agents */
export interface AgentList {
  agents: AgentInfo[];
}

/** POST /v1/auth/dev-login */
export interface DevLoginReply {
  token: string;
  user_id: string;
}

/** POST /v1/auth/ticket: a single-use ticket for the socket handshake (`auth: { ticket }`). */
export interface TicketReply {
  ticket: string;
  /** Seconds. */
  expires_in: number;
}
