/**
 * The public shapes of the LLM layer: what an agent hands to `ctx.llm.chat` (tools included) and what it
 * gets back. Plain data and functions, so a plain-JavaScript plugin can build them without importing Atoll.
 */
import type { JsonValue } from '../../protocol/events.js';

/** A JSON Schema (draft-07) object; a tool's `parameters` must be `{ type: 'object', ... }`. */
export type JsonSchema = { [key: string]: JsonValue };

/** What a tool handler receives besides its (already validated) arguments. */
export interface ToolCallContext {
  /** Aborts when the tool call times out or the run is stopped; pass it to fetch and timers. */
  readonly signal: AbortSignal;
  /** The model's id for this call (also the `tool_call_id` of the tool events). */
  readonly toolCallId: string;
}

/**
 * A tool the model may call. The handler's return value (any JSON value) is what the model sees; a throw,
 * a timeout or arguments that do not match `parameters` become an error result the model sees instead.
 */
export interface ToolDefinition<Args = any> {
  /** `^[A-Za-z0-9_-]{1,64}$`, unique within one chat. */
  name: string;
  description: string;
  parameters: JsonSchema;
  handler(args: Args, call: ToolCallContext): unknown;
  /** Overrides TOOL_TIMEOUT_MS for this tool. */
  timeoutMs?: number;
}

export interface ChatOptions {
  /** The system prompt. */
  system?: string;
  /** Tools the model may call; `ctx.llm.builtinTools` holds `current_time` and `calculator`. */
  tools?: readonly ToolDefinition[];
  /** Model requests at most (default 8, at most 20); the last one may not call tools. */
  maxTurns?: number;
  /** What to ask instead of the run's input text (the stored user message stays the input text). */
  prompt?: string;
}

export interface ChatResult {
  /** The answer: every text token the model produced, exactly as streamed in `partial_result` events. */
  text: string;
  /** Model requests made. */
  turns: number;
  /** Tool calls the model asked for. */
  toolCalls: number;
}

/** `ctx.llm`: the operator's model (LLM_BASE_URL, LLM_MODEL) with Atoll's tool-calling loop. */
export interface RunLlm {
  /** false when LLM_BASE_URL or LLM_MODEL is unset; `chat` then throws a message saying what to set. */
  readonly configured: boolean;
  /** The model name (LLM_MODEL), or null. */
  readonly model: string | null;
  /** Built-in tools an agent may hand to `chat`: current_time and calculator. */
  readonly builtinTools: readonly ToolDefinition[];
  /**
   * One streamed conversation turn set: the thread's earlier messages (LLM_MAX_CONTEXT_MESSAGES) plus the
   * prompt; text streams as `partial_result`, tool calls run with `tool_executing`/`tool_completed`.
   */
  chat(options?: ChatOptions): Promise<ChatResult>;
}
