/**
 * The worker-thread entry Piscina loads: this thread's composition root. It refuses to run on a main
 * thread, so agent code can only ever execute inside a cell's worker threads.
 */
import path from 'node:path';
import { isMainThread, threadId, workerData } from 'node:worker_threads';
import { createLogger } from '../../server/logger.js';
import type { ThreadConfig, ThreadTask } from '../thread-messages.js';
import { guardHost } from './host-guards.js';
import { loadAgentRegistry } from './agent-registry.js';
import { createDbChannel, createThreadPrismaClient } from './db-forwarding.js';
import { createThreadRuntime } from './thread-runtime.js';

if (isMainThread) throw new Error('workers/thread/run-entry must run inside a worker thread, never in the front');
// Before any agent module (or anything it imports) loads.
// What the guards refuse goes into the isolation report of the run that tried (thread-runtime.ts).
const refused = new Set<string>();
guardHost((wall) => refused.add(wall));

const config = workerData as ThreadConfig;
const log = createLogger(config.logLevel, { cell: config.cellId, worker: threadId });
// The thread's own Prisma client, created once: it reaches the database only through the current run's
// port and the front's gate (db-forwarding.ts); this thread never loads a database driver.
const dbChannel = createDbChannel();
const runtime = createThreadRuntime({
  refused,
  config,
  prisma: createThreadPrismaClient(config.dbProvider, dbChannel),
  dbChannel,
  registry: loadAgentRegistry({
    builtinAgentsDir: config.builtinAgentsDir || path.join(__dirname, '../agents'),
    agentsDir: config.agentsDir,
    enableChaosAgents: config.enableChaosAgents,
  }),
  log,
});

function handle(task: ThreadTask) {
  return runtime.handle(task);
}

// Piscina awaits the handler export before it reports the thread ready: a new thread (at cell start, or
// replacing a recycled one) is given tasks only once it is warm, so runs go to warm spares meanwhile.
export default runtime.warm().then(() => handle);
