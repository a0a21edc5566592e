/**
 * The registry of agent CLASSES (never instances): built-ins from workers/agents/ and every .js/.mjs
 * module in AGENTS_DIR. Loaded once per worker; caching a module is fine, caching an instance is
 * the bug this product exists to prevent.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AgentInfo } from '../../protocol/cell-messages.js';
import type { AgentClass } from '../agent-contract.js';

export interface RegisteredAgent {
  name: string;
  source: 'builtin' | 'plugin';
  file: string;
  ctor: AgentClass;
  description: string | null;
  repeatable: boolean;
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
  enableChaosAgents: boolean;
}): Promise<AgentRegistry> {
  const agents = new Map<string, RegisteredAgent>();
  const add = async (file: string, source: 'builtin' | 'plugin') => {
    const entry = await loadAgentModule(file, source);
    const gate = source === 'builtin' ? GATED_BUILTINS[entry.name] : undefined;
    if (gate && !options[gate]) return;
    const prior = agents.get(entry.name);
    if (prior) throw new AgentLoadError(`agent name "${entry.name}" is defined twice: ${prior.file} and ${file}`);
    agents.set(entry.name, entry);
  };

  for (const file of agentFiles(options.builtinAgentsDir, ['.js'])) await add(file, 'builtin');
  if (options.agentsDir) {
    if (!fs.existsSync(options.agentsDir)) throw new AgentLoadError(`AGENTS_DIR ${options.agentsDir} does not exist`);
    for (const file of agentFiles(options.agentsDir, ['.js', '.mjs'])) await add(file, 'plugin');
  }

  const list = [...agents.values()]
    .map((a) => ({ name: a.name, source: a.source, description: a.description, repeatable: a.repeatable }))
    .sort((a, b) => a.name.localeCompare(b.name));
  return { get: (name) => agents.get(name), list: () => list };
}

function agentFiles(dir: string, extensions: string[]): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isFile() && extensions.includes(path.extname(d.name)) && !d.name.endsWith('.test.js'))
    .map((d) => path.join(dir, d.name))
    .sort();
}

async function loadAgentModule(file: string, source: 'builtin' | 'plugin'): Promise<RegisteredAgent> {
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
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
  const description = typeof cls.description === 'string' ? cls.description : null;
  return { name, source, file, ctor: cls, description, repeatable: cls.repeatable !== false };
}
