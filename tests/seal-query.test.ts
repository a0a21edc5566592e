/**
 * The run's seal sits in its shared memory from the start (workers/cell/run-dispatcher.ts), and v8.queryObjects
 * (Node 20.20, 22, 24; format 'summary') prints every Int32Array of the thread's heap with its elements: the run's
 * `startRecorded` among them, [1, seal, seal]. Code holding the run's port (here with THREAD_LOCKDOWN=0, as in
 * run-port.test.ts) signs a done of its own with it: the forged outcome and a clean report that hides the wall the
 * run hit are taken, at once with recycled 'max_runs'.
 */
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';
import { FIND_RUN_PORT } from './helpers/agent-snippets';

const SEALER = `
import v8 from 'node:v8';
import { MessagePort, threadId } from 'node:worker_threads';

export default class Sealer {
  static agentName = 'sealer';
  async execute(ctx) {
${FIND_RUN_PORT}
    // The seal, read out of the heap's Int32Arrays: the run's start flag (1) and the two Int32s beside it.
    let seals = [];
    try {
      seals = v8
        .queryObjects(Int32Array, { format: 'summary' })
        .map((s) => /^Int32Array\\(3\\) \\[ 1, (-?\\d+), (-?\\d+) \\]$/.exec(s))
        .filter(Boolean)
        .map((m) => [Number(m[1]), Number(m[2])]);
    } catch {}
    if (ctx.input.mode === 'read') return { seals: seals.length };
    try {
      process.kill(1, 0);
    } catch {}
    const stats = { workerId: threadId, activeContexts: 1, liveAgentInstances: 1, dbClients: 0 };
    const report = { leaks: {}, globals: [], contaminated: false, recycled: 'max_runs', cleanupMs: 1 };
    original.call(port, { type: 'done', outcome: { status: 'completed', result: 'FORGED sealed done', executionTimeMs: 1 }, stats, report, seal: seals[0] });
    await new Promise((resolve) => setTimeout(resolve, 300));
    return 'returned normally';
  }
}
`;

let server: TestServer;
let user: UserClient;

beforeAll(async () => {
  const agentsDir = agentsDirWith({ 'sealer.mjs': SEALER });
  server = await startServer({ AGENTS_DIR: agentsDir, THREAD_LOCKDOWN: '0', CELLS: '1', THREADS_PER_CELL: '1' });
  user = await UserClient.connect(server.url, 'sealer');
});
afterAll(async () => {
  user?.close();
  await server?.stop();
});

async function run(mode: string) {
  const { run_id } = await user.start({ agent: 'sealer', input: { text: mode, mode } });
  const events = await user.waitForRun(run_id);
  return { end: terminal(events).payload, isolation: (await user.http('GET', `/v1/runs/${run_id}`)).body.isolation };
}

test("agent code does not find its run's seal in the heap (v8.queryObjects)", async () => {
  expect((await run('read')).end).toMatchObject({ status: 'completed', final_response: { seals: 0 } });
});

test("a done of the agent's own, signed with the seal it read, is refused; the wall it hit is reported", async () => {
  const { end, isolation } = await run('forge');
  expect(JSON.stringify(end)).not.toContain('FORGED');
  // Not the forged report's `refused: []`: the wall it hit, or the port wall when its done is refused.
  expect(isolation.refused).not.toEqual([]);
});
