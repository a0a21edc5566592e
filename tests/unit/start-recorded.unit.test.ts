/**
 * A worker runs no agent code for a run (not even its constructor) until the cell says the run's start is written
 * to the front (`start_recorded`): the front's cell-death judgement (server/runs/cell-death.ts) trusts that a run
 * it never heard start never ran. The worker runtime is driven here over a real MessageChannel, in this thread.
 */
import path from 'node:path';
import { MessageChannel } from 'node:worker_threads';
import pino from 'pino';
import { loadConfig } from '../../server/config';
import { cellConfigOf } from '../../server/config-views';
import { pick } from '../../protocol/pick';
import { WORKER_SETTINGS, type WorkerToCell } from '../../protocol/worker-messages';
import type { AgentRegistry } from '../../workers/worker/agent-registry';
import { createDbChannel } from '../../workers/worker/db-forwarding';
import { createHandleTracker } from '../../workers/worker/handle-tracker';
import { createWorkerRuntime } from '../../workers/worker/worker-runtime';

const BUILTIN = path.join(__dirname, '../../workers/agents');

test('a run starts its agent only once the cell answers start_recorded', async () => {
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
  const config = { ...pick({ ...cellConfigOf(loadConfig({}, process.cwd()), 'sqlite', []), cellId: 'cell1-g1' }, WORKER_SETTINGS), cellId: 'cell1-g1', builtinAgentsDir: BUILTIN, workerLockdown: false };
  const runtime = createWorkerRuntime({
    config,
    createPrisma: () => ({}) as never,
    dbChannel: createDbChannel(),
    registry: Promise.resolve(registry),
    log: pino({ level: 'silent' }),
    refused: new Set(),
    handles: createHandleTracker(),
  });
  await runtime.warm();
  const { port1, port2 } = new MessageChannel();
  const seen: WorkerToCell['type'][] = [];
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  const started = new Promise<void>((resolve) =>
    port1.on('message', (msg: WorkerToCell) => {
      seen.push(msg.type);
      if (msg.type === 'started') resolve();
      if (msg.type === 'done') done();
    }),
  );
  const run = { runId: 'r1', userId: 'u1', threadId: 't1', requestId: 'q1', agentName: 'probe', input: { text: 'hello' }, attempt: 1, scratchDir: '/tmp' };
  const outcome = runtime.handle({ kind: 'run', run, port: port2 });
  await started;
  // Long enough for the agent to have been made and to have emitted, had it not waited (it is made at once).
  await new Promise((r) => setTimeout(r, 200));
  expect({ made: made.length, seen }).toEqual({ made: 0, seen: ['started'] });
  const recordedAt = Date.now();
  port1.postMessage({ type: 'start_recorded' });
  expect(await outcome).toMatchObject({ status: 'completed', result: 'ran' });
  expect(made.length).toBe(1);
  expect(made[0]).toBeGreaterThanOrEqual(recordedAt);
  // Made and counted (stats), finished.
  await finished;
  expect(seen).toEqual(['started', 'stats', 'done']);
  port1.close();
});
