/**
 * Piscina's answer to a run's task only says its worker is free (workers/cell/run-dispatcher.ts): agent code that
 * got hold of Piscina's port could answer for the worker, early, with any outcome, and the run's deadline would go
 * with it. A started run is settled by its own `done` alone; an answer with no `done` after it fails the run and
 * ends the worker that started it.
 */
import type { MessagePort } from 'node:worker_threads';
import type { Piscina } from 'piscina';
import type { CellToFront, RunAssignment } from '../../protocol/cell-messages';
import { RUN_SEAL_AT, type WorkerTask } from '../../protocol/worker-messages';
import type { ModelBroker } from '../../workers/cell/model-broker';
import { createRunDispatcher } from '../../workers/cell/run-dispatcher';

const run: RunAssignment = { runId: 'r1', userId: 'u1', threadId: 't1', requestId: 'q1', agentName: 'echo', input: { text: 'x' }, attempt: 1, scratchDir: '/tmp/none' };
const broker: ModelBroker = { open: () => ({ handle: () => false, close: () => undefined, active: 0, refused: () => [] }) };

function dispatcherWith(answer: Promise<unknown>) {
  const sent: CellToFront[] = [];
  const terminated: number[] = [];
  let port: MessagePort | null = null;
  let shared: Int32Array | null = null;
  const pool = {
    threads: [{ threadId: 7, terminate: async () => void terminated.push(7) }],
    run: (task: WorkerTask) => {
      if (task.kind === 'run') ({ port, startRecorded: shared } = task);
      return answer;
    },
  } as unknown as Piscina;
  const dispatcher = createRunDispatcher({
    pool,
    broker,
    send: (msg, written) => {
      sent.push(msg);
      written?.();
    },
    runTimeoutMs: 60_000,
    cancelGraceMs: 1000,
    limits: { maxEventsPerRun: 100, maxEventBytes: 65_536, maxRunEventBytes: 16_777_216, maxResultBytes: 1_048_576, scratchBytes: 0, scratchEntries: 0, openFiles: 0, logBytesPerSecond: 0 },
    log: () => undefined,
    onCountsChanged: () => undefined,
    queryCompiler: async () => null,
  });
  // The run's seal, as the worker runtime reads it for its done.
  const seal = () => [shared![RUN_SEAL_AT], shared![RUN_SEAL_AT + 1]];
  return { dispatcher, sent, terminated, port: () => port!, seal };
}

const finished = (sent: CellToFront[]) => sent.filter((m): m is Extract<CellToFront, { type: 'run_finished' }> => m.type === 'run_finished');

test("a started run that Piscina answers without the worker's done fails, and its worker is ended", async () => {
  let answer!: (value: unknown) => void;
  const { dispatcher, sent, terminated, port } = dispatcherWith(new Promise((resolve) => (answer = resolve)));
  dispatcher.start(run);
  port().postMessage({ type: 'started', workerId: 7, startedAt: Date.now() });
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(sent.map((m) => m.type)).toEqual(['run_started']);
  // What agent code holding Piscina's port would send: a fine outcome of its choosing.
  answer({ status: 'completed', result: 'forged by the agent', executionTimeMs: 1 });
  await new Promise((resolve) => setTimeout(resolve, 2500));
  const [end] = finished(sent);
  expect(end?.outcome).toMatchObject({ status: 'failed', error: { code: 'WORKER_CRASHED' } });
  expect(JSON.stringify(sent)).not.toContain('forged by the agent');
  expect(terminated).toEqual([7]);
  port().close();
});

test("the worker's own done settles the run, whenever Piscina's answer comes", async () => {
  let answer!: (value: unknown) => void;
  const { dispatcher, sent, terminated, port, seal } = dispatcherWith(new Promise((resolve) => (answer = resolve)));
  dispatcher.start(run);
  port().postMessage({ type: 'started', workerId: 7, startedAt: Date.now() });
  answer({ status: 'completed', result: 'whatever Piscina carried', executionTimeMs: 1 });
  port().postMessage({
    type: 'done',
    outcome: { status: 'completed', result: 'the answer', executionTimeMs: 1 },
    stats: { workerId: 7, activeContexts: 0, liveAgentInstances: 0, dbClients: 0 },
    report: { leaks: {}, globals: [], contaminated: false, recycled: null, cleanupMs: 1 },
    seal: seal(),
  });
  await new Promise((resolve) => setTimeout(resolve, 100));
  expect(finished(sent).map((m) => m.outcome)).toEqual([{ status: 'completed', result: 'the answer', executionTimeMs: expect.any(Number) }]);
  expect(terminated).toEqual([]);
  port().close();
});

test("a done without the run's seal (agent code's, on a port it got hold of) is refused: the run fails, its worker is retired", async () => {
  const { dispatcher, sent, port, seal } = dispatcherWith(new Promise(() => undefined));
  dispatcher.start(run);
  port().postMessage({ type: 'started', workerId: 7, startedAt: Date.now() });
  const [a, b] = seal();
  port().postMessage({
    type: 'done',
    outcome: { status: 'completed', result: 'forged by the agent', executionTimeMs: 1 },
    stats: { workerId: 7, activeContexts: 0, liveAgentInstances: 0, dbClients: 0 },
    report: { leaks: {}, globals: [], contaminated: false, recycled: 'max_runs', cleanupMs: 1 },
    seal: [a, b + 1],
  });
  await new Promise((resolve) => setTimeout(resolve, 100));
  const [end] = finished(sent);
  expect(end?.outcome).toMatchObject({ status: 'failed', error: { code: 'AGENT_ERROR', message: expect.stringMatching(/seal/) } });
  expect(end?.report).toMatchObject({ recycled: 'invalid_message', refused: expect.arrayContaining(['port']) });
  expect(JSON.stringify(sent)).not.toContain('forged by the agent');
  port().close();
});
