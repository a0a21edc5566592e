/**
 * `ctx.llm` of one run: the operator's model behind a frozen facade, so any agent, a plain-JavaScript
 * plugin included, gets streaming, tools and the thread's context without importing Atoll's code.
 * Options are checked here, at the boundary, with messages that name the field.
 */
import type { AgentLogger, ScopedDb, UserExecutionContext } from '../agent-contract.js';
import type { AgentSettings } from '../../protocol/cell-messages.js';
import { BUILTIN_TOOLS } from '../tools/builtin-tools.js';
import { isConfigured, modelEndpoint } from './settings.js';
import type { ChatOptions, ChatResult, RunLlm } from './types.js';

/**
 * The model client (openai) and the schema validator (ajv) are loaded on the first chat of a worker, not
 * when the worker starts: most runs never talk to a model, and every new worker would pay for them.
 */
/** Loads the model client now: a worker with a model configured does it while warming up, so what the
 * client library defines globally is part of the worker's clean baseline, not mistaken for a run's leak. */
export function preloadLlm(): void {
  heavy();
}

function heavy() {
  return {
    ...(require('./chat-loop.js') as typeof import('./chat-loop.js')),
    ...(require('./client.js') as typeof import('./client.js')),
    ...(require('./history.js') as typeof import('./history.js')),
    ...(require('./tool-set.js') as typeof import('./tool-set.js')),
  };
}

const DEFAULT_MAX_TURNS = 8;
const MAX_TURNS = 20;
const MAX_SYSTEM_CHARS = 100_000;

export interface RunLlmDeps {
  settings: Readonly<AgentSettings>;
  signal: AbortSignal;
  emit: UserExecutionContext['emit'];
  db: ScopedDb;
  log: AgentLogger;
  /** The run's input text: the stored user message this run answers. */
  inputText: string;
  /** Sends model requests through the cell's broker (workers/llm/broker-fetch.ts). */
  modelFetch: typeof fetch;
}

export function createRunLlm(deps: RunLlmDeps): RunLlm {
  return Object.freeze({
    configured: isConfigured(deps.settings.llm),
    model: deps.settings.llm.model,
    builtinTools: BUILTIN_TOOLS,
    chat: (options?: ChatOptions) => chat(deps, options ?? {}),
  });
}

async function chat(deps: RunLlmDeps, options: ChatOptions): Promise<ChatResult> {
  const endpoint = modelEndpoint(deps.settings.llm);
  const { runChatLoop, createModelClient, loadContext, prepareTools } = heavy();
  const { system, prompt, maxTurns } = checkOptions(options);
  const tools = prepareTools(options.tools, endpoint.toolTimeoutMs);
  const context = await loadContext(deps.db, deps.inputText, endpoint.maxContextMessages);
  deps.signal.throwIfAborted();
  return runChatLoop({
    client: createModelClient(endpoint, deps.log, deps.modelFetch),
    model: endpoint.model,
    baseUrl: endpoint.baseUrl,
    messages: [...(system ? [{ role: 'system' as const, content: system }] : []), ...context, { role: 'user', content: prompt ?? deps.inputText }],
    tools,
    maxTurns,
    emit: deps.emit,
    signal: deps.signal,
    log: deps.log,
  });
}

function checkOptions(options: unknown): { system: string | undefined; prompt: string | undefined; maxTurns: number } {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) throw new TypeError('ctx.llm.chat: options must be an object');
  const o = options as Record<string, unknown>;
  const known = ['system', 'tools', 'maxTurns', 'prompt'];
  const unknown = Object.keys(o).filter((k) => !known.includes(k));
  if (unknown.length) throw new TypeError(`ctx.llm.chat: unknown option ${unknown.map((k) => JSON.stringify(k)).join(', ')}; expected ${known.join(', ')}`);
  if (o.system !== undefined && (typeof o.system !== 'string' || o.system.length > MAX_SYSTEM_CHARS)) {
    throw new TypeError(`ctx.llm.chat: system must be a string of at most ${MAX_SYSTEM_CHARS} characters`);
  }
  if (o.prompt !== undefined && (typeof o.prompt !== 'string' || o.prompt === '')) throw new TypeError('ctx.llm.chat: prompt must be a non-empty string');
  const maxTurns = o.maxTurns ?? DEFAULT_MAX_TURNS;
  if (!Number.isInteger(maxTurns) || (maxTurns as number) < 1 || (maxTurns as number) > MAX_TURNS) {
    throw new TypeError(`ctx.llm.chat: maxTurns must be an integer between 1 and ${MAX_TURNS}`);
  }
  return { system: o.system as string | undefined, prompt: o.prompt as string | undefined, maxTurns: maxTurns as number };
}
