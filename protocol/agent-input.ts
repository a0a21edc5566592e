/**
 * What a run's input is, and what an agent may declare it takes. Any JSON object reaches the agent (a string
 * `s` arrives as `{text: s}`); an agent that needs more says so with `static input`: `'text'` (an object with a
 * `text` string) or a JSON Schema, which the front checks at acceptance (server/runs/input-checks.ts), so a
 * request the agent cannot take is refused with BAD_REQUEST and never becomes a run.
 */
import type { JsonObject, JsonValue } from './events.js';

/** The run's input as agents see it: a JSON object (`{text}` when the request sent a string). */
export type AgentInput = JsonObject;

/** The input of an agent that declared `static input = 'text'`. */
export interface TextInput {
  text: string;
  [key: string]: JsonValue;
}

/** What an agent class may declare as `static input`: absent (any JSON object), 'text', or a JSON Schema. */
export type InputDeclaration = 'text' | JsonObject;

/** `static input = 'text'`, as the schema the front checks. */
export const TEXT_INPUT_SCHEMA: JsonObject = {
  type: 'object',
  required: ['text'],
  properties: { text: { type: 'string' } },
};

/** An agent's declared schema is at most this large (serialized): the front compiles it. */
export const MAX_INPUT_SCHEMA_BYTES = 64 * 1024;

/** The text stored as the user's message in the thread: the input's `text`, else the input as JSON. */
export function inputTextOf(input: AgentInput): string {
  return typeof input.text === 'string' ? input.text : JSON.stringify(input);
}

/**
 * Ajv's options for input schemas, the same where a schema is checked at load (the workers' registry) and
 * where inputs are checked (the front): strict, so a misspelt keyword stops the start; `format` is not checked.
 */
export const INPUT_SCHEMA_OPTIONS = {
  strict: true,
  strictTypes: false,
  strictTuples: false,
  strictRequired: false,
  validateFormats: false,
  allErrors: false,
  logger: false,
} as const;
