/**
 * What the HTTP API and the socket acks show of stored records (snake_case on the wire). The front builds
 * them (server/http/views.ts); the browser reads them. One definition for both.
 */
import type { ErrorBody } from './errors.js';
import type { JsonValue, RunStatus } from './events.js';

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
  /** What Atoll found about the run's isolation (leaks, globals, walls hit, restarts), or null. */
  isolation: unknown;
  replay_of: string | null;
}

/** GET /v1/agents: one entry per agent the cells loaded. */
export interface AgentInfo {
  name: string;
  /** false: the agent declared itself not safe to run twice (static repeatable = false). */
  repeatable: boolean;
  source: 'builtin' | 'plugin';
  description: string | null;
}

/** GET /v1/meta: what the chat page must know before anyone signs in. */
export interface PageMeta {
  dev_login: boolean;
  llm_configured: boolean;
}
