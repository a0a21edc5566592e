/**
 * The tools of one chat: each definition checked at the boundary (a bad definition is the agent author's
 * bug and fails the run with a message naming the tool and the field), each parameter schema compiled once
 * with Ajv so the model's arguments can be checked before a handler ever sees them.
 */
import Ajv, { type ValidateFunction } from 'ajv';
import type { ChatCompletionFunctionTool } from 'openai/resources/chat/completions';
import type { JsonSchema, ToolDefinition } from './types.js';

const TOOL_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const MAX_TOOLS = 64;
const MAX_TOOL_TIMEOUT_MS = 600_000;

export interface PreparedTool {
  definition: ToolDefinition;
  validate: ValidateFunction;
  timeoutMs: number;
}

export interface ToolSet {
  readonly size: number;
  get(name: string): PreparedTool | undefined;
  names(): string[];
  /** The `tools` field of a Chat Completions request. */
  specs(): ChatCompletionFunctionTool[];
}

export class ToolDefinitionError extends TypeError {}

export function prepareTools(tools: unknown, defaultTimeoutMs: number): ToolSet {
  if (tools === undefined) tools = [];
  if (!Array.isArray(tools)) throw new ToolDefinitionError('ctx.llm.chat: tools must be an array of tool definitions');
  if (tools.length > MAX_TOOLS) throw new ToolDefinitionError(`ctx.llm.chat: at most ${MAX_TOOLS} tools`);
  // One validator per chat: compiled schemas live and die with the run.
  const ajv = new Ajv({ allErrors: true, strictSchema: true, strictTypes: false, strictTuples: false, strictRequired: false, validateFormats: false, logger: false });
  const prepared = new Map<string, PreparedTool>();
  tools.forEach((tool: unknown, i) => {
    const where = `ctx.llm.chat: tools[${i}]`;
    if (tool === null || typeof tool !== 'object') throw new ToolDefinitionError(`${where} must be an object`);
    const t = tool as Partial<ToolDefinition>;
    if (typeof t.name !== 'string' || !TOOL_NAME.test(t.name)) throw new ToolDefinitionError(`${where}.name must match ${TOOL_NAME}`);
    const at = `${where} (${t.name})`;
    if (prepared.has(t.name)) throw new ToolDefinitionError(`${at}: the name is used twice`);
    if (typeof t.description !== 'string' || !t.description.trim()) throw new ToolDefinitionError(`${at}.description must be a non-empty string`);
    if (typeof t.handler !== 'function') throw new ToolDefinitionError(`${at}.handler must be a function`);
    if (!isObjectSchema(t.parameters)) throw new ToolDefinitionError(`${at}.parameters must be a JSON schema with type "object"`);
    if (t.timeoutMs !== undefined && !(Number.isInteger(t.timeoutMs) && t.timeoutMs > 0 && t.timeoutMs <= MAX_TOOL_TIMEOUT_MS)) {
      throw new ToolDefinitionError(`${at}.timeoutMs must be an integer between 1 and ${MAX_TOOL_TIMEOUT_MS}`);
    }
    let validate: ValidateFunction;
    try {
      validate = ajv.compile(structuredClone(t.parameters));
    } catch (err) {
      throw new ToolDefinitionError(`${at}.parameters is not a valid JSON schema: ${(err as Error).message}`);
    }
    prepared.set(t.name, { definition: t as ToolDefinition, validate, timeoutMs: t.timeoutMs ?? defaultTimeoutMs });
  });

  const specs: ChatCompletionFunctionTool[] = [...prepared.values()].map(({ definition: d }) => ({
    type: 'function',
    function: { name: d.name, description: d.description, parameters: structuredClone(d.parameters) },
  }));
  return {
    size: prepared.size,
    get: (name) => prepared.get(name),
    names: () => [...prepared.keys()],
    specs: () => specs,
  };
}

function isObjectSchema(value: unknown): value is JsonSchema {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && (value as { type?: unknown }).type === 'object';
}

/** Ajv's errors as one line the model can act on: "/expression must be string; must have required property 'x'". */
export function describeSchemaErrors(validate: ValidateFunction): string {
  return (validate.errors ?? [])
    .slice(0, 5)
    .map((e) => `${e.instancePath || 'arguments'} ${e.message ?? 'is invalid'}${e.keyword === 'additionalProperties' ? ` (${String((e.params as { additionalProperty?: unknown }).additionalProperty)})` : ''}`)
    .join('; ');
}
