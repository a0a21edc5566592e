/**
 * Builds a NEW agent instance for every run. A class whose constructor hands back an object that already
 * served a run (a cached "singleton agent") is detected and the run refused.
 */
import type { Agent } from '../agent-contract.js';
import type { RegisteredAgent } from './agent-registry.js';

export class SingletonAgentError extends Error {
  readonly code = 'SINGLETON_AGENT';
  override name = 'SingletonAgentError';
}

export interface AgentFactory {
  create(entry: RegisteredAgent): Agent;
}

export function createAgentFactory(): AgentFactory {
  // Weak: remembering an instance must not keep it alive.
  const served = new WeakSet<object>();
  return {
    create(entry) {
      const instance = new entry.ctor() as Agent;
      if (instance === null || typeof instance !== 'object' || typeof instance.execute !== 'function') {
        throw new TypeError(`agent "${entry.name}": constructor did not produce an object with execute()`);
      }
      if (served.has(instance)) {
        throw new SingletonAgentError(`agent "${entry.name}" returned an instance that already served a run; agents must be built fresh per run`);
      }
      served.add(instance);
      return instance;
    },
  };
}
