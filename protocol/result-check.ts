/**
 * An agent's result as a run may end with it: a string or a JSON object, serialisable, within MAX_RESULT_BYTES.
 * Checked by the worker when the agent returns (workers/worker/outcome.ts) and again by the cell for the `done`
 * that arrives on the run's port (workers/cell/run-port-check.ts), which agent code can reach.
 */
import type { JsonValue } from './events.js';
import { MAX_OUTPUT_DEPTH, nestsDeeperThan } from './json-nesting.js';

export type CheckedResult = { ok: true; result: JsonValue } | { ok: false; code: 'AGENT_ERROR' | 'LIMIT_EXCEEDED'; message: string };

export function checkResult(result: unknown, maxResultBytes: number): CheckedResult {
  if (typeof result !== 'string' && (result === null || typeof result !== 'object' || Array.isArray(result))) {
    return { ok: false, code: 'AGENT_ERROR', message: `execute() must return a string or a JSON object, got ${result === null ? 'null' : Array.isArray(result) ? 'an array' : typeof result}` };
  }
  let text: string;
  try {
    text = JSON.stringify(result);
  } catch (err) {
    return { ok: false, code: 'AGENT_ERROR', message: `execute() returned a value that is not JSON-serialisable: ${(err as Error).message}` };
  }
  if (Buffer.byteLength(text) > maxResultBytes) return { ok: false, code: 'LIMIT_EXCEEDED', message: `result is over MAX_RESULT_BYTES (${maxResultBytes})` };
  // What was checked is what goes on: the parsed JSON, never the agent's own object (a getter or a toJSON could answer differently the second time).
  const parsed = JSON.parse(text) as JsonValue;
  if (nestsDeeperThan(parsed, MAX_OUTPUT_DEPTH)) return { ok: false, code: 'AGENT_ERROR', message: `execute() returned a value that nests objects and arrays deeper than ${MAX_OUTPUT_DEPTH} levels` };
  return { ok: true, result: parsed };
}
