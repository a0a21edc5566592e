/**
 * The worker's composition root, loaded by run-entry.ts once what runs share is frozen.
 */
import path from 'node:path';
import { threadId as workerId } from 'node:worker_threads';
import { createLogger } from '../../server/logger.js';
import type { WorkerConfig, WorkerTask } from '../../protocol/worker-messages.js';
import { loadAgentRegistry } from './agent-registry.js';
import type { DescriptorWall } from './fd-guards.js';
import type { FreezeReport } from './freeze-shared.js';
import { createHandleTracker } from './handle-tracker.js';
import { fitLogLine } from './log-line.js';
import { createDbChannel, createWorkerPrismaClient } from './db-forwarding.js';
import { createWorkerRuntime } from './worker-runtime.js';

/** Resolves to the task handler once the worker is warm. */
/** `asyncHooks`: async_hooks' own, from before its guard (async-hooks-guards.ts): the handle tracker needs the real resources. */
export function startWorker(config: WorkerConfig, frozen: FreezeReport | null, refused: Set<string>, queryCompiler: WebAssembly.Module | null, descriptors: DescriptorWall, asyncHooks: { createHook: typeof import('node:async_hooks').createHook; executionAsyncResource: () => object }, getAsyncId: (this: object) => number, bornNice: number | null) {
  // Synchronous: the cell may terminate this thread right after a run's last line (server/logger.ts).
  const log = createLogger(config.logLevel, { cell: config.cellId, worker: workerId }, { write: (line) => descriptors.writeLog(fitLogLine(line)) });
  log.debug({ lockdown: config.workerLockdown, lockdown_ms: frozen ? Math.round(frozen.lockdownMs) : null }, 'thread starting');
  // The worker's own Prisma client, created once: it reaches the database only through the current run's
  // port and the front's gate (db-forwarding.ts); this worker never loads a database driver.
  const dbChannel = createDbChannel(queryCompiler);
  const runtime = createWorkerRuntime({
    config,
    refused,
    createPrisma: () => createWorkerPrismaClient(config.dbProvider, dbChannel),
    dbChannel,
    registry: loadAgentRegistry({
      builtinAgentsDir: config.builtinAgentsDir || path.join(__dirname, '../agents'),
      agentsDir: config.agentsDir,
      compiledAgents: config.compiledAgents,
      enableChaosAgents: config.enableChaosAgents,
    }),
    log,
    handles: createHandleTracker(asyncHooks, getAsyncId),
    openDescriptors: descriptors.openDescriptors,
    openSockets: descriptors.openSockets,
    bornNice,
  });
  const handle = (task: WorkerTask) => runtime.handle(task);
  return runtime.warm().then(() => handle);
}
