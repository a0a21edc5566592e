/**
 * The worker runtime's task handler is in the module cache (run-entry.js's default export, which Piscina loads with
 * require()): agent code can find it through `require.cache` (createRequire in an ES module) and hand it a run of its
 * own, with a port and shared memory it made itself. That nested run shares the worker's state with the real one:
 * it clears the walls the real run hit and restarts (then stops) the handle tracker, so the real run's `done`,
 * sealed and sent by the runtime itself, carries a clean report: no `signal` wall, no leaked interval, the worker
 * kept. Lockdown on (the default).
 */
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';

const REENTRANT = `
import { createRequire } from 'node:module';
import { MessageChannel } from 'node:worker_threads';
const require = createRequire(import.meta.url);

export default class Reentrant {
  static agentName = 'reentrant';
  async execute(ctx) {
    // Two things the run's report must name: a signal to pid 1 (refused: 'signal'), an unref'd interval left behind.
    try {
      process.kill(1, 0);
    } catch {}
    setInterval(() => {}, 60_000).unref();
    if (ctx.input.mode !== 'reentry') return 'plain';
    // The worker runtime's own task handler, from the module cache.
    const [, entry] = Object.entries(require.cache).find(([file]) => file.endsWith('/workers/worker/run-entry.js'));
    const handler = await entry.exports.default;
    const { port1 } = new MessageChannel();
    const startRecorded = new Int32Array(new SharedArrayBuffer(12));
    startRecorded[0] = 1;
    const run = { runId: ctx.runId, userId: ctx.userId, threadId: ctx.threadId, requestId: ctx.requestId, agentName: 'echo', input: 'nested', attempt: 1, scratchDir: ctx.scratchDir };
    let timer;
    await Promise.race([handler({ kind: 'run', run, port: port1, startRecorded }).catch(() => null), new Promise((resolve) => (timer = setTimeout(resolve, 2000)))]);
    clearTimeout(timer);
    port1.close();
    return 'reentered';
  }
}
`;

let server: TestServer;
let user: UserClient;

beforeAll(async () => {
  const agentsDir = agentsDirWith({ 'reentrant.mjs': REENTRANT });
  server = await startServer({ AGENTS_DIR: agentsDir, CELLS: '1', THREADS_PER_CELL: '1' });
  user = await UserClient.connect(server.url, 'reentrant');
});
afterAll(async () => {
  user?.close();
  await server?.stop();
});

async function run(mode: string) {
  const { run_id } = await user.start({ agent: 'reentrant', input: { text: mode, mode } });
  const events = await user.waitForRun(run_id);
  return { end: terminal(events).payload, isolation: (await user.http('GET', `/v1/runs/${run_id}`)).body.isolation };
}

test('without re-entry, the report names the wall and the leak, and the worker is retired', async () => {
  const { isolation } = await run('plain');
  expect(isolation).toMatchObject({ refused: expect.arrayContaining(['signal']), leaks: { timer: 1 }, recycled: 'leaked_resources' });
});

test("a run of the agent's own through the runtime's handler hides neither the wall nor the leak", async () => {
  const { isolation } = await run('reentry');
  expect(isolation).toMatchObject({ refused: expect.arrayContaining(['signal']), leaks: { timer: 1 }, recycled: expect.stringMatching(/./) });
});
