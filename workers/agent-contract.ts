/**
 * The agent plugin contract. An agent module's default export is a class:
 *
 * @example
 * export default class Greeter {
 *   static agentName = 'greeter';          // optional: defaults to the file's base name
 *   static description = 'Says hello';      // optional: shown by GET /v1/agents
 *   static input = 'text';                   // optional: what input it takes ('text' or a JSON Schema); default any JSON object
 *   async execute(ctx) {
 *     ctx.emit('agent_thinking', { reasoning: 'composing a greeting' });
 *     if (ctx.signal.aborted) return '';
 *     return `Hello, ${ctx.input.text}!`;   // a string or a JSON object
 *   }
 *   async cleanup() {}                      // optional: always runs after execute, whatever happened
 * }
 *
 * A NEW instance is built for every run and never reused; per-run state belongs on `this`.
 */
import type { AgentInput, InputDeclaration, TextInput } from '../protocol/agent-input.js';
import type { AgentSettings } from '../protocol/cell-messages.js';
import type { AgentEventType, EventPayloads, JsonObject, JsonValue } from '../protocol/events.js';
import type { RunLlm } from './llm/types.js';

export type AgentResult = string | JsonObject;

/** A JSON log line of the run's worker, tagged `"from":"agent"` with the run's ids; `fields` appear under `fields`. */
export interface AgentLogger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export interface ThreadView {
  id: string;
  title: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface MessageView {
  id: number;
  role: 'user' | 'assistant' | 'tool';
  content: string;
  status: 'complete' | 'interrupted';
  createdAt: string;
}

/** A run-scoped data handle: it reaches only the run's own user's data, and dies with the run. */
export interface ScopedDb {
  threads: {
    get(threadId: string): Promise<ThreadView | null>;
    list(options?: { limit?: number }): Promise<ThreadView[]>;
  };
  messages: {
    /** The run's own thread by default; another thread of the same user by id; other users' threads: []. */
    list(options?: { threadId?: string; limit?: number; afterId?: number }): Promise<MessageView[]>;
  };
  /** Refused (`DB_UNSUPPORTED`): ctx.db offers no transactions; the callback is never called. */
  $transaction?(...args: unknown[]): Promise<never>;
}

/** Immutable: frozen before the agent sees it. `I` is the input the agent declared it takes (default: any JSON object). */
export interface UserExecutionContext<I extends object = AgentInput> {
  readonly userId: string;
  readonly threadId: string;
  readonly runId: string;
  readonly requestId: string;
  readonly agentName: string;
  readonly attempt: number;
  /** A deep-frozen copy of the request's input: a string arrives as `{text}`. */
  readonly input: Readonly<I>;
  /** Aborted on stop_agent, on timeout and on shutdown; its worker is terminated soon after. */
  readonly signal: AbortSignal;
  emit<T extends AgentEventType>(type: T, payload: EventPayloads[T]): void;
  readonly db: ScopedDb;
  readonly log: AgentLogger;
  /** Operator settings (LLM endpoint, tool timeout), frozen. */
  readonly settings: Readonly<AgentSettings>;
  /** The operator's model (LLM_BASE_URL, LLM_MODEL) with streaming and tool calling: `await ctx.llm.chat({ system, tools })`. */
  readonly llm: RunLlm;
  /** A folder of this run's own, empty at the start and removed when the run ends: the only place agent code may write files. */
  readonly scratchDir: string;
}

/** The same context, by the name agent authors use. */
export type RunContext<I extends object = AgentInput> = UserExecutionContext<I>;

export interface Agent<I extends object = AgentInput> {
  execute(ctx: UserExecutionContext<I>): Promise<AgentResult> | AgentResult;
  cleanup?(): Promise<void> | void;
}

export interface AgentClass<I extends object = AgentInput> {
  new (): Agent<I>;
  agentName?: string;
  description?: string;
  /** What input it takes, checked by the front before a run is accepted (BAD_REQUEST otherwise): 'text' (an
   * object with a `text` string: a plain string always is one) or a JSON Schema. Absent: any JSON object. */
  input?: InputDeclaration;
  /** Set false when running the agent twice is unsafe (it has outside effects): a bystander of a cell
   * death is then failed with WORKER_CRASHED instead of being run again. Default true. */
  repeatable?: boolean;
}

export type { AgentEventType, AgentInput, EventPayloads, InputDeclaration, JsonObject, JsonValue, TextInput };
