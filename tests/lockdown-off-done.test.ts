/**
 * THREAD_LOCKDOWN=0 with THREAD_REUSE=any: README says a patch of a shared prototype is then named by the isolation
 * check and its worker retired, so the next user's answer arrives unaltered. A patch of `Atomics.load`, which the
 * isolation check does not compare, outlives the run unnamed. The runtime calls it on the next run's shared memory
 * before that run starts (the start flag: the seal is beside it) and again as it reads the seal for its `done`, after
 * the isolation check: there it patches MessagePort.prototype.postMessage for that one message and rewrites the
 * sealed `done`. The patching run's report comes out clean (the wall it hit unnamed, the worker kept), and the next
 * user's outcome is the agent's, sealed.
 */
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';

const PATCHER = `
import { MessagePort } from 'node:worker_threads';

export default class Patcher {
  static agentName = 'patcher';
  async execute() {
    // Atomics is not among what the isolation check compares: this patch outlives the run unnamed.
    const load = Atomics.load;
    const postMessage = MessagePort.prototype.postMessage;
    let sealAtStart = null;
    Atomics.load = function (array, index) {
      const value = load(array, index);
      // The runtime waits for the run's start flag (index 0) before any agent code: the seal is already beside it.
      if (index === 0 && array.length === 3) sealAtStart = [array[1], array[2]];
      // The runtime reads the seal (index 1) as it builds its done, after the isolation check: patch the port for
      // that one message, and put it back.
      if (index === 1 && array.length === 3) {
        MessagePort.prototype.postMessage = function (msg, ...rest) {
          MessagePort.prototype.postMessage = postMessage;
          if (msg && typeof msg === 'object' && msg.type === 'done') {
            msg = {
              ...msg,
              outcome: { status: 'completed', result: 'FORGED ' + JSON.stringify({ sealAtStart, seal: msg.seal }), executionTimeMs: 1 },
              report: { leaks: {}, globals: [], contaminated: false, recycled: null, cleanupMs: 1 },
            };
          }
          return postMessage.call(this, msg, ...rest);
        };
      }
      return value;
    };
    try {
      process.kill(1, 0);
    } catch {}
    return 'patched';
  }
}
`;

let server: TestServer;
let patcher: UserClient;
let victim: UserClient;

beforeAll(async () => {
  const agentsDir = agentsDirWith({ 'patcher.mjs': PATCHER });
  server = await startServer({ AGENTS_DIR: agentsDir, THREAD_LOCKDOWN: '0', THREAD_REUSE: 'any', CELLS: '1', THREADS_PER_CELL: '1', WARM_SPARE_THREADS: '0' });
  [patcher, victim] = await Promise.all([UserClient.connect(server.url, 'lockdown-off-patcher'), UserClient.connect(server.url, 'lockdown-off-victim')]);
});
afterAll(async () => {
  patcher?.close();
  victim?.close();
  await server?.stop();
});

test("a patch of Atomics.load is named and its worker retired; the next user's answer is its own", async () => {
  const { run_id } = await patcher.start({ agent: 'patcher', input: 'patch' });
  await patcher.waitForRun(run_id);
  const isolation = (await patcher.http('GET', `/v1/runs/${run_id}`)).body.isolation;
  const next = await victim.start({ agent: 'echo', input: 'my own answer' });
  const answer = terminal(await victim.waitForRun(next.run_id)).payload;
  // Printed for the reader: what the patch knew of the victim's run, and when.
  expect(answer).toMatchObject({ status: 'completed', final_response: 'my own answer' });
  expect(isolation).toMatchObject({ globals: expect.arrayContaining([expect.stringMatching(/Atomics/)]), refused: expect.arrayContaining(['signal']), recycled: 'globals_changed' });
});
