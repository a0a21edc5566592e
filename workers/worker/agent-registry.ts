/**
 * The registry of agent CLASSES (never instances): built-ins from workers/agents/ and every .js/.mjs
 * module in AGENTS_DIR, and its .ts modules as the front compiled them (server/agents/compile-agents.ts).
 * Loaded once per worker; caching a module is fine, caching an instance is
 * the bug this product exists to prevent.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { AGENT_EXTENSIONS, TYPESCRIPT_AGENT_EXTENSIONS, isAgentFile } from '../../protocol/agent-files.js';
import type AjvClass from 'ajv';
import { INPUT_SCHEMA_OPTIONS, MAX_INPUT_SCHEMA_BYTES, TEXT_INPUT_SCHEMA } from '../../protocol/agent-input.js';
import type { AgentInfo, CompiledAgent } from '../../protocol/cell-messages.js';
import type { JsonObject } from '../../protocol/events.js';
import type { AgentClass } from '../agent-contract.js';

export interface RegisteredAgent {
  name: string;
  source: 'builtin' | 'plugin';
  file: string;
  ctor: AgentClass;
  description: string | null;
  repeatable: boolean;
  /** The JSON Schema its input must match (the front checks it); null: any JSON object. */
  input: JsonObject | null;
}

export interface AgentRegistry {
  get(name: string): RegisteredAgent | undefined;
  list(): AgentInfo[];
}

const AGENT_NAME = /^[A-Za-z0-9_-]{1,64}$/;
/** Built-ins that exist only when their switch is on. */
const GATED_BUILTINS: Record<string, 'enableChaosAgents'> = { chaos: 'enableChaosAgents' };

export class AgentLoadError extends Error {
  override name = 'AgentLoadError';
}

export async function loadAgentRegistry(options: {
  builtinAgentsDir: string;
  agentsDir: string | null;
  /** AGENTS_DIR's .ts agents, compiled by the front (none: a .ts agent there is an error). */
  compiledAgents?: readonly CompiledAgent[];
  enableChaosAgents: boolean;
}): Promise<AgentRegistry> {
  const compiled = new Map((options.compiledAgents ?? []).map((c) => [c.source, c.module]));
  const agents = new Map<string, RegisteredAgent>();
  const add = async (file: string, source: 'builtin' | 'plugin') => {
    // A built-in whose switch is off is dropped before its input schema is compiled (chaos's would load ajv).
    const gatedOff = (name: string) => {
      const gate = source === 'builtin' ? GATED_BUILTINS[name] : undefined;
      return gate !== undefined && !options[gate];
    };
    const entry = await loadAgentModule(file, source, TYPESCRIPT_AGENT_EXTENSIONS.includes(path.extname(file)) ? compiled.get(file) ?? null : file, gatedOff);
    if (!entry) return;
    const prior = agents.get(entry.name);
    if (prior) throw new AgentLoadError(`agent name "${entry.name}" is defined twice: ${prior.file} and ${file}`);
    agents.set(entry.name, entry);
  };

  for (const file of agentFiles(options.builtinAgentsDir, ['.js'])) await add(file, 'builtin');
  if (options.agentsDir) {
    if (!fs.existsSync(options.agentsDir)) throw new AgentLoadError(`AGENTS_DIR ${options.agentsDir} does not exist`);
    for (const file of agentFiles(options.agentsDir, AGENT_EXTENSIONS)) await add(file, 'plugin');
  }

  const list = [...agents.values()]
    .map((a) => ({ name: a.name, source: a.source, description: a.description, repeatable: a.repeatable, input: a.input }))
    .sort((a, b) => a.name.localeCompare(b.name));
  return { get: (name) => agents.get(name), list: () => list };
}

function agentFiles(dir: string, extensions: string[]): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isFile() && isAgentFile(d.name, extensions))
    .map((d) => path.join(dir, d.name))
    .sort();
}

/** `module` is what is imported: the file itself, or (a .ts agent) the front's compilation of it. */
async function loadAgentModule(file: string, source: 'builtin' | 'plugin', module: string | null, gatedOff: (name: string) => boolean): Promise<RegisteredAgent | null> {
  if (module === null) throw new AgentLoadError(`agent module ${file} was not compiled by the front (TypeScript agents are compiled at start-up)`);
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(module).href)) as { default?: unknown };
  } catch (err) {
    throw new AgentLoadError(`cannot load agent module ${file}: ${(err as Error).message}`);
  }
  // A CommonJS module compiled from `export default` arrives as { default: { default: Class } }.
  let ctor = mod.default as unknown;
  if (ctor && typeof ctor === 'object' && 'default' in ctor) ctor = (ctor as { default: unknown }).default;
  if (typeof ctor !== 'function' || typeof (ctor as { prototype?: { execute?: unknown } }).prototype?.execute !== 'function') {
    throw new AgentLoadError(`agent module ${file} must default-export a class with an execute(ctx) method`);
  }
  const cls = ctor as AgentClass;
  const name = typeof cls.agentName === 'string' ? cls.agentName : path.basename(file, path.extname(file));
  if (!AGENT_NAME.test(name)) throw new AgentLoadError(`agent name "${name}" (${file}) must match ${AGENT_NAME}`);
  if (gatedOff(name)) return null;
  const description = typeof cls.description === 'string' ? cls.description : null;
  return { name, source, file, ctor: cls, description, repeatable: cls.repeatable !== false, input: inputSchemaOf(cls.input, file) };
}

/** `static input`: absent (any JSON object), 'text', or a JSON Schema (an object; the front compiles it). */
function inputSchemaOf(declared: unknown, file: string): JsonObject | null {
  if (declared === undefined) return null;
  if (declared === 'text') return TEXT_INPUT_SCHEMA;
  let json: string | undefined;
  try {
    json = declared && typeof declared === 'object' && !Array.isArray(declared) ? JSON.stringify(declared) : undefined;
  } catch {
    json = undefined;
  }
  if (json === undefined) throw new AgentLoadError(`agent module ${file}: static input must be 'text' or a JSON Schema object`);
  if (Buffer.byteLength(json) > MAX_INPUT_SCHEMA_BYTES) throw new AgentLoadError(`agent module ${file}: its input schema is over ${MAX_INPUT_SCHEMA_BYTES} bytes`);
  const schema = JSON.parse(json) as JsonObject;
  try {
    // Required here, not imported: most agents declare no schema, and ajv is ~0.8 MiB of every idle worker's heap.
    const Ajv = (require('ajv') as { default: typeof AjvClass }).default;
    new Ajv(INPUT_SCHEMA_OPTIONS).compile(schema); // the front compiles it the same way: a bad one stops the start here
  } catch (err) {
    throw new AgentLoadError(`agent module ${file}: static input is not a valid JSON Schema: ${(err as Error).message}`);
  }
  return schema;
}
