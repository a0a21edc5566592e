/**
 * The limit's Piscina task: the bench agent's run with nothing around it (no context checks, no port, no
 * database); its events travel back with the result.
 */
import { loadAgentClass, NEVER } from './agent-module.js';

interface Task {
  agentFile: string;
  runId: string;
  text: string;
}

export = async function run(task: Task) {
  // import() caches the module per worker, as Atoll's registry caches classes (never instances).
  const Agent = await loadAgentClass(task.agentFile);
  const events: { type: string; payload: Record<string, unknown> }[] = [];
  const agent = new Agent();
  const result = await agent.execute({ userId: 'bench', runId: task.runId, input: { text: task.text }, signal: NEVER, emit: (type, payload) => events.push({ type, payload }) });
  return { result, events };
};
