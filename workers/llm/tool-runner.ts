/**
 * Runs one tool call the model asked for, and always answers it: unknown tool, arguments that are not JSON
 * or do not match the schema, a handler that throws or outlives its timeout all become an error result the
 * model reads, so the conversation stays valid and the model can correct itself. Every call is framed by
 * tool_executing and tool_completed, also when the run is stopped in the middle of it.
 */
import type { UserExecutionContext } from '../agent-contract.js';
import type { JsonValue } from '../../protocol/events.js';
import { MAX_OUTPUT_DEPTH, nestsDeeperThan } from '../../protocol/json-nesting.js';
import { abortable } from './abortable.js';
import { describeSchemaErrors, type ToolSet } from './tool-set.js';

/** What the model gets back from one tool (Chat Completions tool messages are text). */
const MAX_RESULT_CHARS = 16_000;
/** Tool events stay far below MAX_EVENT_BYTES; a bigger value is shown as a preview. */
const MAX_EVENT_VALUE_BYTES = 16_384;
const PREVIEW_CHARS = 2_000;

export interface ToolCallRequest {
  id: string;
  name: string;
  /** The raw JSON text the model produced. */
  arguments: string;
}

class ToolTimeoutError extends Error {}

type Emit = UserExecutionContext['emit'];

export async function runToolCall(call: ToolCallRequest, tools: ToolSet, deps: { emit: Emit; signal: AbortSignal }): Promise<string> {
  const { emit, signal } = deps;
  const startedAt = Date.now();
  const parsed = parseArguments(call.arguments);
  emit('tool_executing', { tool_call_id: call.id, tool_name: call.name, parameters: eventValue(parsed.ok ? parsed.value : { unparsed_arguments: call.arguments }) });

  let completed = false;
  const complete = (status: 'success' | 'error', results: JsonValue) => {
    if (completed) return;
    completed = true;
    emit('tool_completed', { tool_call_id: call.id, tool_name: call.name, status, results: eventValue(results), execution_time_ms: Date.now() - startedAt });
  };
  // A stop ends the run at once; the closing event must be emitted synchronously, while the context lives.
  const onStop = () => {
    try {
      complete('error', { error: 'the run was stopped during this tool call' });
    } catch {
      // the context is already released: nothing left to tell
    }
  };
  signal.addEventListener('abort', onStop, { once: true });
  const fail = (message: string) => {
    complete('error', { error: message });
    return JSON.stringify({ error: message });
  };

  try {
    const tool = tools.get(call.name);
    if (!tool) return fail(`unknown tool "${call.name}"; available tools: ${tools.names().join(', ') || 'none'}`);
    if (!parsed.ok) return fail(`the arguments are not valid JSON (${parsed.error}); send a JSON object matching the tool's parameters`);
    if (!tool.validate(parsed.value)) return fail(`invalid arguments: ${describeSchemaErrors(tool.validate)}`);

    let result: unknown;
    try {
      result = await withTimeout(tool.timeoutMs, signal, (callSignal) =>
        Promise.resolve().then(() => tool.definition.handler(parsed.value, Object.freeze({ signal: callSignal, toolCallId: call.id }))),
      );
    } catch (err) {
      if (signal.aborted) throw err; // the run is over; onStop already closed the call
      if (err instanceof ToolTimeoutError) return fail(err.message);
      return fail(`the tool failed: ${errorMessage(err)}`);
    }
    const json = toJson(result);
    if (!json.ok) return fail(`the tool returned a value that is not JSON: ${json.error}`);
    complete('success', json.value);
    const text = typeof json.value === 'string' ? json.value : JSON.stringify(json.value);
    return text.length > MAX_RESULT_CHARS ? `${text.slice(0, MAX_RESULT_CHARS)}… [truncated: ${text.length} characters]` : text;
  } finally {
    signal.removeEventListener('abort', onStop);
  }
}

/** Runs work with its own signal: aborted by the run's signal or after timeoutMs, whichever comes first. */
async function withTimeout<T>(timeoutMs: number, runSignal: AbortSignal, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const forward = () => controller.abort(runSignal.reason);
  runSignal.addEventListener('abort', forward, { once: true });
  const timer = setTimeout(() => controller.abort(new ToolTimeoutError(`the tool timed out after ${timeoutMs} ms`)), timeoutMs);
  try {
    return await abortable(work(controller.signal), controller.signal);
  } finally {
    clearTimeout(timer);
    runSignal.removeEventListener('abort', forward);
  }
}

function parseArguments(text: string): { ok: true; value: JsonValue } | { ok: false; error: string } {
  // Some servers send "" for a tool without parameters.
  if (text.trim() === '') return { ok: true, value: {} };
  try {
    return { ok: true, value: JSON.parse(text) as JsonValue };
  } catch (err) {
    return { ok: false, error: errorMessage(err) };
  }
}

function toJson(value: unknown): { ok: true; value: JsonValue } | { ok: false; error: string } {
  if (value === undefined) return { ok: true, value: null };
  try {
    const text = JSON.stringify(value);
    return text === undefined ? { ok: false, error: typeof value } : { ok: true, value: JSON.parse(text) as JsonValue };
  } catch (err) {
    return { ok: false, error: errorMessage(err) };
  }
}

/**
 * Keeps a tool event small and shallow whatever the model or the tool produced: an event nests at most
 * MAX_OUTPUT_DEPTH levels, its payload being one of them, and ctx.emit throws past it (a model asked for
 * arguments 70 arrays deep would otherwise fail the run).
 */
function eventValue(value: JsonValue): JsonValue {
  const text = JSON.stringify(value);
  const bytes = Buffer.byteLength(text);
  if (bytes <= MAX_EVENT_VALUE_BYTES && !nestsDeeperThan(value, MAX_OUTPUT_DEPTH - 1)) return value;
  return { truncated: true, bytes, preview: text.slice(0, PREVIEW_CHARS) };
}

function errorMessage(err: unknown): string {
  return String((err as { message?: unknown })?.message ?? err).slice(0, 1000);
}
