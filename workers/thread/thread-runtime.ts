/**
 * One worker thread's runtime: its Prisma client (one per thread), its agent registry and factory, and
 * the execution of one run at a time. Everything a run touches is built per run and released after it.
 */
import { threadId, type MessagePort } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { Db } from '../../prisma/create-client.js';
import type { RunAssignment, RunOutcome } from '../../server/protocol/cell-messages.js';
import type { Agent } from '../agent-contract.js';
import type { CellToThread, DescribeReply, StopReason, ThreadConfig, ThreadStats, ThreadTask, ThreadToCell } from '../thread-messages.js';
import { createAgentFactory } from './agent-factory.js';
import type { AgentRegistry } from './agent-registry.js';
import { createExecutionContext, deepFreeze, type ExecutionContextHandle } from './execution-context.js';
import { completedOutcome, failedOutcome, stoppedOutcome } from './outcome.js';

const CLEANUP_TIMEOUT_MS = 2000;

class StopSignal extends Error {
  constructor(readonly reason: StopReason | 'limit') {
    super(`run stopped: ${reason}`);
  }
}

export function createThreadRuntime(deps: { config: ThreadConfig; prisma: Db; registry: Promise<AgentRegistry>; log: Logger }) {
  const { config, prisma, log } = deps;
  const factory = createAgentFactory();
  const settings = deepFreeze(config.agentSettings);
  // A registry that failed to load is reported by describe(); mark it handled so the thread survives.
  deps.registry.catch(() => undefined);
  const counters = { activeContexts: 0, liveAgentInstances: 0 };
  const stats = (): ThreadStats => ({ workerId: threadId, ...counters, dbClients: 1 });

  async function describe(): Promise<DescribeReply> {
    const registry = await deps.registry;
    return { agents: registry.list(), stats: stats() };
  }

  async function execute(run: RunAssignment, port: MessagePort): Promise<RunOutcome> {
    const post = (msg: ThreadToCell) => port.postMessage(msg);
    const startedAt = Date.now();
    post({ type: 'started', workerId: threadId, startedAt });
    const runLog = log.child({ run_id: run.runId, user_id: run.userId, thread_id: run.threadId, worker: threadId, attempt: run.attempt });

    const controller = new AbortController();
    const stop = (reason: StopReason | 'limit') => {
      if (!controller.signal.aborted) controller.abort(new StopSignal(reason));
    };
    port.on('message', (msg: CellToThread) => {
      if (msg.type === 'abort') stop(msg.reason);
    });
    // Resolves when the run is stopped, so a stop wins even against an agent that never settles.
    const stopped = new Promise<never>((_, reject) =>
      controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true }),
    );
    stopped.catch(() => undefined);

    let agent: Agent | null = null;
    let handle: ExecutionContextHandle | null = null;
    let outcome: RunOutcome;
    const elapsed = () => Date.now() - startedAt;
    try {
      const entry = (await deps.registry).get(run.agentName);
      if (!entry) throw Object.assign(new Error(`agent "${run.agentName}" is not registered in this cell`), { code: 'AGENT_ERROR' });
      handle = createExecutionContext({ run, port, signal: controller.signal, prisma, limits: config.limits, log: runLog, settings, onViolation: () => stop('limit') });
      counters.activeContexts++;
      agent = factory.create(entry);
      counters.liveAgentInstances++;
      post({ type: 'stats', stats: stats() });
      const result = await Promise.race([Promise.resolve().then(() => agent!.execute(handle!.ctx)), stopped]);
      outcome = handle.emitter.violation ? failedOutcome(handle.emitter.violation, elapsed()) : completedOutcome(result, config.limits, elapsed());
    } catch (err) {
      const reason = controller.signal.aborted ? (controller.signal.reason as StopSignal).reason : null;
      if (reason === 'limit' || handle?.emitter.violation) outcome = failedOutcome(handle?.emitter.violation ?? err, elapsed());
      else if (reason) outcome = stoppedOutcome(reason, elapsed());
      else outcome = failedOutcome(err, elapsed());
    } finally {
      // Cleanup always runs, bounded so a stuck cleanup cannot hold the thread.
      if (agent && typeof agent.cleanup === 'function') {
        try {
          await Promise.race([Promise.resolve().then(() => agent!.cleanup!()), delay(CLEANUP_TIMEOUT_MS)]);
        } catch (err) {
          runLog.warn({ err: String((err as Error)?.message ?? err) }, 'agent cleanup threw');
        }
      }
      if (handle) {
        handle.release();
        counters.activeContexts--;
      }
      if (agent) counters.liveAgentInstances--;
      agent = null;
      handle = null;
    }
    post({ type: 'done', outcome, stats: stats() });
    port.close();
    return outcome;
  }

  return {
    handle(task: ThreadTask): Promise<RunOutcome | DescribeReply> {
      return task.kind === 'describe' ? describe() : execute(task.run, task.port);
    },
  };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
