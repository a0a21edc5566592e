/**
 * The run event: one shape for the whole path. Agents emit {type, payload}; the front numbers it, stores
 * the envelope in the event log and sends the very same envelope to each of the user's sockets.
 */
import type { ErrorBody } from './errors.js';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** Events only the engine emits. */
export const ENGINE_EVENT_TYPES = ['message_received', 'run_queued', 'agent_started', 'run_restarted', 'agent_completed'] as const;
/** Events an agent may emit through ctx.emit. */
export const AGENT_EVENT_TYPES = ['agent_thinking', 'tool_executing', 'tool_completed', 'partial_result'] as const;

export type EngineEventType = (typeof ENGINE_EVENT_TYPES)[number];
export type AgentEventType = (typeof AGENT_EVENT_TYPES)[number];
export type RunEventType = EngineEventType | AgentEventType;

export type TerminalStatus = 'completed' | 'failed' | 'cancelled' | 'timeout';
export type RunStatus = 'queued' | 'running' | TerminalStatus;

export interface EventPayloads {
  message_received: { correlation_id: string | null };
  /** The run has waited over a second for its slot; position is its place among its user's waiting runs. */
  run_queued: { position: number };
  agent_started: { status: 'running'; message: string };
  /** The run's cell died under it and it is being run again (its events follow again, seq still growing). */
  run_restarted: { attempt: number; reason: string };
  agent_thinking: { reasoning: string };
  tool_executing: { tool_call_id: string; tool_name: string; parameters: JsonValue };
  tool_completed: {
    tool_call_id: string;
    tool_name: string;
    status: 'success' | 'error';
    results: JsonValue;
    execution_time_ms: number;
  };
  partial_result: { text: string };
  agent_completed: {
    status: TerminalStatus;
    success: boolean;
    final_response: JsonValue;
    error?: ErrorBody;
    execution_time_ms: number;
  };
}

export interface RunEventEnvelope<T extends RunEventType = RunEventType> {
  type: T;
  event_id: string;
  seq: number;
  run_id: string;
  thread_id: string;
  user_id: string;
  agent_name: string;
  timestamp: string;
  payload: EventPayloads[T];
  /** Set when the front merged partial_result events seq coalesced_from_seq..seq for a lagging socket. */
  coalesced_from_seq?: number;
}

/** Any run event, discriminated by `type` (what a client receives). */
export type AnyRunEventEnvelope = { [T in RunEventType]: RunEventEnvelope<T> }[RunEventType];

/** A cheap shape check for what arrives from a socket (the server is trusted; this guards against mix-ups). */
export function isRunEventEnvelope(value: unknown): value is AnyRunEventEnvelope {
  const v = value as Partial<RunEventEnvelope> | null;
  return !!v && typeof v === 'object' && typeof v.type === 'string' && typeof v.run_id === 'string' && typeof v.seq === 'number' && typeof v.thread_id === 'string';
}

/** What an agent's emit produces inside the worker, before the front numbers it. */
export interface AgentEvent {
  type: AgentEventType;
  payload: JsonObject;
  timestamp: number;
}

