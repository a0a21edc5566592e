/**
 * ctx.emit: checks each agent event against the closed list of types and their payload shapes, enforces
 * the run's output caps, and posts it on the run's own port. Bad events throw into the agent at once,
 * with a message that says what is wrong.
 */
import type { MessagePort } from 'node:worker_threads';
import type { RunLimits } from '../../server/protocol/cell-messages.js';
import { AGENT_EVENT_TYPES, type AgentEventType, type JsonObject } from '../../server/protocol/events.js';
import type { ThreadToCell } from '../thread-messages.js';

export class LimitExceededError extends Error {
  readonly code = 'LIMIT_EXCEEDED';
  override name = 'LimitExceededError';
}

type FieldCheck = [field: string, kind: 'string' | 'number' | 'json' | 'status'];
const SHAPES: Record<AgentEventType, FieldCheck[]> = {
  agent_thinking: [['reasoning', 'string']],
  partial_result: [['text', 'string']],
  tool_executing: [['tool_call_id', 'string'], ['tool_name', 'string'], ['parameters', 'json']],
  tool_completed: [['tool_call_id', 'string'], ['tool_name', 'string'], ['status', 'status'], ['results', 'json'], ['execution_time_ms', 'number']],
};

export interface RunEmitter {
  emit(type: unknown, payload: unknown): void;
  /** After release every emit throws: a context never outlives its run. */
  release(): void;
  /** Set when a cap was crossed, even if the agent swallowed the error. */
  readonly violation: LimitExceededError | null;
}

export function createRunEmitter(port: MessagePort, limits: RunLimits, onViolation: (err: LimitExceededError) => void): RunEmitter {
  let count = 0;
  let released = false;
  let violation: LimitExceededError | null = null;
  const fail = (err: LimitExceededError): never => {
    if (!violation) {
      violation = err;
      onViolation(err);
    }
    throw err;
  };

  return {
    get violation() {
      return violation;
    },
    release() {
      released = true;
    },
    emit(type, payload) {
      if (released) throw new Error('ctx.emit called after the run ended: the execution context is released');
      if (violation) throw violation;
      if (typeof type !== 'string' || !(AGENT_EVENT_TYPES as readonly string[]).includes(type)) {
        throw new TypeError(`ctx.emit: unknown event type ${JSON.stringify(type)}; expected one of ${AGENT_EVENT_TYPES.join(', ')}`);
      }
      if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
        throw new TypeError(`ctx.emit(${type}): payload must be an object`);
      }
      for (const [field, kind] of SHAPES[type as AgentEventType]) {
        const v = (payload as Record<string, unknown>)[field];
        const ok =
          kind === 'string' ? typeof v === 'string'
          : kind === 'number' ? typeof v === 'number' && Number.isFinite(v)
          : kind === 'status' ? v === 'success' || v === 'error'
          : v !== undefined;
        if (!ok) throw new TypeError(`ctx.emit(${type}): payload.${field} must be ${kind === 'status' ? '"success" or "error"' : `a ${kind}`}`);
      }
      let text: string;
      try {
        text = JSON.stringify(payload);
      } catch (err) {
        throw new TypeError(`ctx.emit(${type}): payload is not JSON-serialisable: ${(err as Error).message}`);
      }
      if (Buffer.byteLength(text) > limits.maxEventBytes) fail(new LimitExceededError(`event ${type} is over MAX_EVENT_BYTES (${limits.maxEventBytes})`));
      if (++count > limits.maxEventsPerRun) fail(new LimitExceededError(`run emitted more than MAX_EVENTS_PER_RUN (${limits.maxEventsPerRun}) events`));
      const msg: ThreadToCell = { type: 'event', event: { type: type as AgentEventType, payload: JSON.parse(text) as JsonObject, timestamp: Date.now() } };
      port.postMessage(msg);
    },
  };
}
