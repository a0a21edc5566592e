/**
 * The worker runtime's task handler is in the module cache (run-entry.js's default export, which Piscina loads with
 * require()): agent code can find it through `require.cache` (createRequire in an ES module) and hand it a run of its
 * own, with a port and shared memory it made itself. That nested run shares the worker's state with the real one:
 * it clears the walls the real run hit and restarts (then stops) the handle tracker, so the real run's `done`,
 * sealed and sent by the runtime itself, carries a clean report: no `signal` wall, no leaked interval, the worker
 * kept. Lockdown on (the default).
 */
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, httpCall, metricValue, terminal } from './helpers/client';

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

/**
 * The same handler called by code a finished run left behind, once its worker is idle, with a run of a made-up user:
 * refused (another user), that forged task never ends, so the runtime stayed busy for good while Piscina saw an idle
 * worker. Every task Piscina gave it was rejected at once ("a run is already executing") and the cell failed that run
 * WORKER_CRASHED without retiring the worker; with a full pool, the least recently used idle worker of another user is
 * where other users' runs go, and that worker stayed the least recently used: every other user's run failed
 * (helper-80). Now any run task while one executes marks the worker, and every run task it gets after that is
 * refused on its own port: a real one is run elsewhere, the worker retired.
 */
describe("a finished run's leftover code calling the handler once its worker is idle", () => {
  const WEDGER = `
import { createRequire } from 'node:module';
import { MessageChannel } from 'node:worker_threads';
const require = createRequire(import.meta.url);
export default class Wedger {
  static agentName = 'wedger';
  async execute(ctx) {
    const [, entry] = Object.entries(require.cache).find(([file]) => file.endsWith('/workers/worker/run-entry.js'));
    const handler = await entry.exports.default;
    const cell = new Int32Array(new SharedArrayBuffer(4));
    let tries = 0;
    // Outlives the run (an Atomics.waitAsync holds no handle), calling the handler until it takes a forged run.
    const poll = () => Atomics.waitAsync(cell, 0, 0, 20).value.then(() => {
      if (++tries > 1000) return;
      const { port1 } = new MessageChannel();
      const startRecorded = new Int32Array(new SharedArrayBuffer(64));
      startRecorded[0] = 1;
      const run = { runId: 'forged', userId: 'nobody-' + tries, threadId: 'forged', requestId: 'forged', agentName: 'wedger', input: {}, attempt: 1, scratchDir: ctx.scratchDir };
      handler({ kind: 'run', run, port: port1, startRecorded }).then(() => undefined, () => { port1.close(); poll(); });
    });
    poll();
    return 'armed';
  }
}
`;
  const QUICK = `export default class Quick { static agentName = 'quick'; async execute(ctx) { return 'ok ' + ctx.userId; } }`;
  let wedged: TestServer;
  const clients: UserClient[] = [];
  beforeAll(async () => {
    wedged = await startServer({ AGENTS_DIR: agentsDirWith({ 'wedger.mjs': WEDGER, 'quick.mjs': QUICK }), CELLS: '1', THREADS_PER_CELL: '1', WARM_SPARE_THREADS: '0' });
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await wedged?.stop();
  });
  const runAs = async (userId: string, agent: string) => {
    const c = await UserClient.connect(wedged.url, userId);
    clients.push(c);
    const { run_id } = await c.start({ agent, input: { text: 'hi' } });
    return terminal(await c.waitForRun(run_id, 60_000)).payload;
  };

  test("other users' runs sent to that worker complete elsewhere, and the worker is retired", async () => {
    expect(await runAs('mallory', 'wedger')).toMatchObject({ status: 'completed', final_response: 'armed' });
    await new Promise((resolve) => setTimeout(resolve, 2500)); // the runtime's settling after the run, then the poll's calls
    // Three other users fill the pool (1 + 3 burst workers), each on a fresh worker of its own; then runs of users
    // without a worker go to the least recently used idle worker of another user: mallory's.
    for (const u of ['u1', 'u2', 'u3', 'victor', 'wendy', 'xavier']) expect([u, await runAs(u, 'quick')]).toEqual([u, expect.objectContaining({ status: 'completed', final_response: `ok ${u}` })]);
    const metrics = (await httpCall(wedged.url, 'GET', '/metrics')).body as string;
    expect(metricValue(metrics, 'atoll_worker_recycles_total', { reason: 'tampered' })).toBeGreaterThanOrEqual(1);
  });
});
