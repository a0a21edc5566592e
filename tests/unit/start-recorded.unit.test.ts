/**
 * A worker runs no agent code for a run (not even its constructor) until the cell has set the run's
 * `startRecorded` (its start is written to the front): the front's cell-death judgement (server/runs/cell-death.ts)
 * trusts that a run it never heard start never ran. The worker runtime runs here, in this thread, over a real
 * MessageChannel; another thread plays the cell and sets the flag 300 ms after the run is handed over.
 */
import { createHook, executionAsyncResource } from 'node:async_hooks';
import path from 'node:path';
import { MessageChannel, Worker } from 'node:worker_threads';
import pino from 'pino';
import { loadConfig } from '../../server/config';
import { cellConfigOf } from '../../server/config-views';
import { pick } from '../../protocol/pick';
import { RUN_SHARED_INT32S, WORKER_SETTINGS, type WorkerToCell } from '../../protocol/worker-messages';
import type { AgentRegistry } from '../../workers/worker/agent-registry';
import { createDbChannel } from '../../workers/worker/db-forwarding';
import { createHandleTracker } from '../../workers/worker/handle-tracker';
import { createWorkerRuntime } from '../../workers/worker/worker-runtime';

const BUILTIN = path.join(__dirname, '../../workers/agents');

test('a run starts its agent only once the cell has set startRecorded', async () => {
  // The agent records when it is made: its constructor is the first agent code of a run.
  const made: number[] = [];
  class Probe {
    constructor() {
      made.push(Date.now());
    }
    async execute() {
      return 'ran';
    }
  }
  const entry = { name: 'probe', source: 'plugin' as const, file: 'probe.js', ctor: Probe, description: null, repeatable: true, input: null };
  const registry: AgentRegistry = { get: (name) => (name === 'probe' ? entry : undefined), list: () => [] };
  const config = { ...pick({ ...cellConfigOf(loadConfig({}, process.cwd()), 'sqlite', []), cellId: 'cell1-g1' }, WORKER_SETTINGS), builtinAgentsDir: BUILTIN, workerLockdown: false };
  const runtime = createWorkerRuntime({
    config,
    createPrisma: () => ({}) as never,
    dbChannel: createDbChannel(),
    registry: Promise.resolve(registry),
    log: pino({ level: 'silent' }),
    refused: new Set(),
    handles: createHandleTracker({ createHook, executionAsyncResource }, function (this: object) { return -1; }),
    openDescriptors: () => 0,
    openSockets: () => 0,
  });
  await runtime.warm();
  const { port1, port2 } = new MessageChannel();
  const seen: WorkerToCell['type'][] = [];
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  port1.on('message', (msg: WorkerToCell) => {
    seen.push(msg.type);
    if (msg.type === 'done') done();
  });
  const run = { runId: 'r1', userId: 'u1', threadId: 't1', requestId: 'q1', agentName: 'probe', input: { text: 'hello' }, attempt: 1, scratchDir: '/tmp' };
  const startRecorded = new Int32Array(new SharedArrayBuffer(RUN_SHARED_INT32S * 4));
  // The cell's part, on a thread of its own: this one blocks while the worker runtime waits.
  const cell = new Worker(
    `const { workerData: flag, parentPort } = require('node:worker_threads');
     parentPort.once('message', () => { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300); Atomics.store(flag, 0, 1); Atomics.notify(flag, 0); });`,
    { eval: true, workerData: startRecorded },
  );
  await new Promise((resolve) => cell.once('online', resolve));
  const handedAt = Date.now();
  cell.postMessage('go');
  const outcome = await runtime.handle({ kind: 'run', run, port: port2, startRecorded, eventsTaken: new Int32Array(new SharedArrayBuffer(4)) });
  await finished;
  await cell.terminate();
  expect(outcome).toMatchObject({ status: 'completed', result: 'ran' });
  // Made once, and not before the flag was set (less a few ms of timer slack).
  expect(made.length).toBe(1);
  expect(made[0] - handedAt).toBeGreaterThanOrEqual(280);
  expect(seen).toEqual(['started', 'stats', 'done']);
  port1.close();
});
