/**
 * The two designs Atoll is compared with, behind one interface: one shared agent instance per agent in
 * the server's own process (no isolation at all), and one fresh child process per run.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { loadAgentClass, NEVER } from './agent-module.js';
import { agentFile, RUN_CHILD_ENTRY } from './paths.js';

export interface RunRequest {
  runId: string;
  userId: string;
  agent: string;
  input: { text: string; [key: string]: unknown };
}

export interface Executor {
  run(req: RunRequest, emit: (type: string, payload: Record<string, unknown>) => void): Promise<unknown>;
  pids(): number[];
}

export function inProcessExecutor(): Executor {
  // The anti-pattern, on purpose: one instance per agent, shared by every run of every user.
  const shared = new Map<string, Promise<{ execute(ctx: unknown): Promise<unknown> }>>();
  return {
    async run(req, emit) {
      let agent = shared.get(req.agent);
      if (!agent) shared.set(req.agent, (agent = loadAgentClass(agentFile(req.agent)).then((C) => new C())));
      return (await agent).execute({ userId: req.userId, runId: req.runId, input: req.input, signal: NEVER, emit });
    },
    pids: () => [process.pid],
  };
}

export function processPerRunExecutor(): Executor {
  const children = new Set<ChildProcess>();
  return {
    run(req, emit) {
      return new Promise((resolve, reject) => {
        const child = fork(RUN_CHILD_ENTRY, [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] });
        children.add(child);
        let outcome: { ok: true; result: unknown } | { ok: false; message: string } | null = null;
        child.on('message', (msg: { type: string; event?: { type: string; payload: Record<string, unknown> }; result?: unknown; message?: string }) => {
          if (msg.type === 'event' && msg.event) emit(msg.event.type, msg.event.payload);
          else if (msg.type === 'done') outcome = { ok: true, result: msg.result };
          else if (msg.type === 'error') outcome = { ok: false, message: msg.message ?? 'error' };
        });
        // The run counts as finished when its process is gone: that is what frees the slot in this design.
        // 'close', not 'exit': 'exit' may come before the last IPC messages have been delivered.
        child.once('close', (code, signal) => {
          children.delete(child);
          if (outcome?.ok) resolve(outcome.result);
          else reject(new Error(outcome && !outcome.ok ? outcome.message : `run process ended (${code ?? signal})`));
        });
        child.send({ agentFile: agentFile(req.agent), runId: req.runId, userId: req.userId, input: req.input });
      });
    },
    pids: () => [process.pid, ...[...children].map((c) => c.pid).filter((p): p is number => typeof p === 'number')],
  };
}
