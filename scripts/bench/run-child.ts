/**
 * Process-per-run baseline: the child that runs exactly one run, then exits. It gets its assignment over
 * IPC and sends its events and result back the same way.
 */
import { loadAgentClass, NEVER } from './agent-module.js';
import { messageOf } from '../../protocol/errors.js';

interface Assignment {
  agentFile: string;
  runId: string;
  userId: string;
  input: { text: string; [key: string]: unknown };
}

const send = (msg: unknown) => new Promise<void>((resolve) => process.send!(msg, () => resolve()));

process.once('message', async (a: Assignment) => {
  try {
    const Agent = await loadAgentClass(a.agentFile);
    const result = await new Agent().execute({
      userId: a.userId,
      runId: a.runId,
      input: Object.freeze(a.input),
      signal: NEVER,
      emit: (type, payload) => process.send!({ type: 'event', event: { type, payload } }),
    });
    await send({ type: 'done', result });
    process.exit(0);
  } catch (err) {
    await send({ type: 'error', message: messageOf(err) });
    process.exit(1);
  }
});
