/**
 * The worker entry Piscina loads (a worker: one worker thread of a cell's pool). It refuses to run on a main
 * thread, so agent code can only ever execute inside a cell's workers. Before the worker's own modules load, it takes away what agent code
 * must not have (host-guards.ts, fd-guards.ts, egress-guards.ts) and freezes what runs share (THREAD_LOCKDOWN): nothing of Prisma, pino or any
 * agent runs against unguarded or unfrozen objects.
 */
import dgram from 'node:dgram';
import dns from 'node:dns';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { isMainThread, threadId, workerData } from 'node:worker_threads';
import { deepFreeze } from '../../protocol/deep-freeze.js';
import type { WorkerConfig, WorkerData } from '../../protocol/worker-messages.js';
import { freezeShared } from './freeze-shared.js';
import { guardAsyncHooks } from './async-hooks-guards.js';
import { guardEgress, guardListening } from './egress-guards.js';
import { guardDescriptors } from './fd-guards.js';
import { guardHost } from './host-guards.js';
import { socketHandles } from './socket-handles.js';
import { noteWarm, takeWarmUpTurn } from './warm-up-turn.js';

if (isMainThread) throw new Error('workers/worker/run-entry must run inside a worker thread, never in the front');

// This thread's priority as it was born: what it takes back after a run the CPU governor lowered (worker-runtime.ts).
const bornNice = (() => {
  try {
    return os.getPriority(0);
  } catch {
    return null;
  }
})();
const data = workerData as WorkerData;
// The warm-up lock is memory shared by the cell's workers, whoever they serve: it leaves workerData before any
// other code runs, and this module drops it once its turn is over, so no agent code can ever reach it.
let warmUpLock: Int32Array | null = data.warmUpLock;
delete (data as { warmUpLock?: Int32Array }).warmUpLock;
// Prisma's query compiler, compiled by the cell (eager warm-up only): for the worker's own Prisma client alone.
const queryCompiler = data.queryCompiler;
delete (data as { queryCompiler?: WebAssembly.Module | null }).queryCompiler;
// Frozen: workerData is an ordinary object any code in this thread can reach, and the worker reads its settings at
// every run (the same-user refusal, the limits, the runs per worker): a run must not be able to change them for
// the next one (README "Threat model"; escape.test.ts).
const config: WorkerConfig = deepFreeze(data);
/** How long a worker waits for its turn to warm up before it warms anyway (the holder may have died warming). */
const WARM_UP_TURN_MAX_WAIT_MS = 2000;

// Piscina awaits the handler export before it reports the worker ready: a new worker (at cell start, or
// replacing a recycled one) is given tasks only once it is warm, so runs go to warm spares meanwhile.
export default (async () => {
  const release = await takeWarmUpTurn(warmUpLock!, WARM_UP_TURN_MAX_WAIT_MS);
  try {
    // What the guards refuse goes into the isolation report of the run that tried (worker-runtime.ts). Guarded
    // before the freeze: the guards replace members the freeze then pins. Nothing but Node and Piscina ran before.
    const refused = new Set<string>();
    guardHost((wall) => refused.add(wall));
    const asyncHooks = guardAsyncHooks();
    // The worker's own log keeps the one writer to fd 1 taken before the wall.
    const handles = socketHandles({ net, dgram, dns });
    // A FileHandle of this very file, so the wall guards FileHandles before any other code makes one.
    const sample = await fs.promises.open(__filename, 'r');
    const descriptors = guardDescriptors(() => refused.add('fd'), undefined, handles, { max: config.limits.openFiles, onLimit: () => refused.add('open_files') }, sample);
    guardEgress(config.agentEgress, () => refused.add('egress'), handles);
    guardListening(() => refused.add('egress'), handles);
    const frozen = config.workerLockdown ? freezeShared() : null;
    // Required only now, after the freeze (an import would be hoisted above it).
    const { startWorker } = require('./worker-main.js') as typeof import('./worker-main.js');
    const handler = await startWorker(config, frozen, refused, queryCompiler, descriptors, asyncHooks, handles.getAsyncId, bornNice);
    noteWarm(warmUpLock!, threadId);
    return handler;
  } finally {
    release();
    warmUpLock = null;
  }
})();
