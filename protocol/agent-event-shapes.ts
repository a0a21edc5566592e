/**
 * The closed list of what an agent event may carry: checked by the worker at `ctx.emit` (workers/worker/run-emitter.ts,
 * which throws the problem into the agent) and again by the cell for whatever arrives on a run's port
 * (workers/cell/run-port-check.ts, which agent code can reach: it refuses the message).
 */
import { AGENT_EVENT_TYPES, type AgentEventType } from './events.js';

type FieldCheck = [field: string, kind: 'string' | 'number' | 'json' | 'status'];
const SHAPES: Record<AgentEventType, FieldCheck[]> = {
  agent_thinking: [['reasoning', 'string']],
  partial_result: [['text', 'string']],
  tool_executing: [['tool_call_id', 'string'], ['tool_name', 'string'], ['parameters', 'json']],
  tool_completed: [['tool_call_id', 'string'], ['tool_name', 'string'], ['status', 'status'], ['results', 'json'], ['execution_time_ms', 'number']],
};

export const isAgentEventType = (type: unknown): type is AgentEventType => typeof type === 'string' && (AGENT_EVENT_TYPES as readonly string[]).includes(type);

/** What is wrong with an event's payload (`payload.x must be …`), or null when its fields are as its type says. */
export function payloadProblem(type: AgentEventType, payload: unknown): string | null {
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) return 'payload must be an object';
  for (const [field, kind] of SHAPES[type]) {
    const v = (payload as Record<string, unknown>)[field];
    const ok =
      kind === 'string' ? typeof v === 'string'
      : kind === 'number' ? typeof v === 'number' && Number.isFinite(v)
      : kind === 'status' ? v === 'success' || v === 'error'
      : v !== undefined;
    if (!ok) return `payload.${field} must be ${kind === 'status' ? '"success" or "error"' : `a ${kind}`}`;
  }
  return null;
}
