/**
 * The worker thread's composition root, loaded by run-entry.ts once what runs share is frozen.
 */
import path from 'node:path';
import { threadId } from 'node:worker_threads';
import { createLogger } from '../../server/logger.js';
import type { ThreadConfig, ThreadTask } from '../../protocol/thread-messages.js';
import { loadAgentRegistry } from './agent-registry.js';
import type { FreezeReport } from './freeze-shared.js';
import { createHandleTracker } from './handle-tracker.js';
import { createDbChannel, createThreadPrismaClient } from './db-forwarding.js';
import { createThreadRuntime } from './thread-runtime.js';

/** Resolves to the task handler once the thread is warm. */
export function startThread(config: ThreadConfig, frozen: FreezeReport | null, refused: Set<string>) {
  const log = createLogger(config.logLevel, { cell: config.cellId, worker: threadId });
  log.debug({ lockdown: config.lockdown, lockdown_ms: frozen ? Math.round(frozen.lockdownMs) : null }, 'thread starting');
  // The thread's own Prisma client, created once: it reaches the database only through the current run's
  // port and the front's gate (db-forwarding.ts); this thread never loads a database driver.
  const dbChannel = createDbChannel();
  const runtime = createThreadRuntime({
    config,
    refused,
    prisma: createThreadPrismaClient(config.dbProvider, dbChannel),
    dbChannel,
    registry: loadAgentRegistry({
      builtinAgentsDir: config.builtinAgentsDir || path.join(__dirname, '../agents'),
      agentsDir: config.agentsDir,
      enableChaosAgents: config.enableChaosAgents,
    }),
    log,
    handles: createHandleTracker(),
  });
  const handle = (task: ThreadTask) => runtime.handle(task);
  return runtime.warm().then(() => handle);
}
