/**
 * Agent code can make the worker runtime throw after the run, before it sends its `done`: the handle tracker reads
 * `_idleTimeout` of every timer the run left (workers/worker/handle-tracker.ts), and a getter the agent put on its own
 * timer throws there. No `done`, no report: the run fails WORKER_CRASHED with the walls it hit unreported, and its
 * worker, answered with an error rather than ended, serves the next run with the run's timer and module state still in
 * it. README: "a started run ends with its own done, or fails (WORKER_CRASHED) and its worker is ended". Lockdown on.
 */
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';

const SUPPRESSOR = `
let runsHere = 0;

export default class Suppressor {
  static agentName = 'suppressor';
  async execute(ctx) {
    runsHere++;
    if (ctx.input.mode !== 'suppress') return { runsHere };
    try {
      process.kill(1, 0);
    } catch {}
    const timer = setTimeout(() => {}, 100_000);
    let armed = false;
    Object.defineProperty(timer, '_idleTimeout', {
      get() {
        if (armed) {
          armed = false;
          throw new Error('not now');
        }
        return 100_000;
      },
      set() {},
      configurable: true,
    });
    armed = true;
    return 'suppressed';
  }
}
`;

let server: TestServer;
let user: UserClient;

beforeAll(async () => {
  const agentsDir = agentsDirWith({ 'suppressor.mjs': SUPPRESSOR });
  server = await startServer({ AGENTS_DIR: agentsDir, CELLS: '1', THREADS_PER_CELL: '1' });
  user = await UserClient.connect(server.url, 'suppressor');
});
afterAll(async () => {
  user?.close();
  await server?.stop();
});

async function run(mode: string) {
  const { run_id } = await user.start({ agent: 'suppressor', input: { text: mode, mode } });
  const events = await user.waitForRun(run_id);
  return { end: terminal(events).payload, isolation: (await user.http('GET', `/v1/runs/${run_id}`)).body.isolation };
}

test('a run whose runtime is made to throw before its done does not leave its worker serving the next run', async () => {
  await run('suppress');
  const next = await run('count');
  // A fresh worker: the agent module loaded anew, its first run there.
  expect(next.end).toMatchObject({ status: 'completed', final_response: { runsHere: 1 } });
});
