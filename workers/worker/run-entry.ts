/**
 * The worker entry Piscina loads (a worker: one worker thread of a cell's pool). It refuses to run on a main
 * thread, so agent code can only ever execute inside a cell's workers. Before the worker's own modules load, it takes away what agent code
 * must not have (host-guards.ts) and freezes what runs share (THREAD_LOCKDOWN): nothing of Prisma, pino or any
 * agent runs against unguarded or unfrozen objects.
 */
import { isMainThread, workerData } from 'node:worker_threads';
import type { WorkerConfig } from '../../protocol/worker-messages.js';
import { freezeShared } from './freeze-shared.js';
import { guardHost } from './host-guards.js';

if (isMainThread) throw new Error('workers/worker/run-entry must run inside a worker thread, never in the front');

const config = workerData as WorkerConfig;
// What the guards refuse goes into the isolation report of the run that tried (worker-runtime.ts). Guarded
// before the freeze: the guards replace members the freeze then pins.
const refused = new Set<string>();
guardHost((wall) => refused.add(wall));
const frozen = config.workerLockdown ? freezeShared() : null;
// Required only now, after the freeze (an import would be hoisted above it).
const { startWorker } = require('./worker-main.js') as typeof import('./worker-main.js');

// Piscina awaits the handler export before it reports the worker ready: a new worker (at cell start, or
// replacing a recycled one) is given tasks only once it is warm, so runs go to warm spares meanwhile.
export default startWorker(config, frozen, refused);
