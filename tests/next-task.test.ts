/**
 * THREAD_LOCKDOWN=0: code that gets hold of Piscina's task port (here a patch of MessagePort.prototype.postMessage put
 * in after the isolation check, from a patch of os.getPriority, which that check does not compare and the runtime called after
 * it, and taken out again at Piscina's answer) listens on it: the worker's next task arrives there too, its run's port and shared memory with it.
 * The next run, on the same worker, signs a done of its own with that seal on that port: taken, with its forged
 * outcome and clean report, at once with recycled 'max_runs'. (With THREAD_REUSE=any the next run is another user's.)
 */
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';

const NEXT_TASK = `
import os from 'node:os';
import { MessagePort, threadId } from 'node:worker_threads';
let nextTask = null;
const postMessage = MessagePort.prototype.postMessage;
export default class NextTask {
  static agentName = 'nexttask';
  async execute(ctx) {
    if (ctx.input.mode === 'forge') {
      if (!nextTask) return 'no task captured';
      const seal = [nextTask.startRecorded[1], nextTask.startRecorded[2]];
      postMessage.call(nextTask.port, { type: 'done', outcome: { status: 'completed', result: 'FORGED via next task ' + JSON.stringify(seal), executionTimeMs: 1 }, stats: { workerId: threadId, activeContexts: 1, liveAgentInstances: 1, dbClients: 0 }, report: { leaks: {}, globals: [], contaminated: false, recycled: 'max_runs', cleanupMs: 1 }, seal });
      await new Promise((r) => setTimeout(r, 300));
      return 'returned normally';
    }
    // After the isolation check the runtime asks its priority back (os.getPriority, which that check does not
    // compare): patch postMessage there until Piscina's answer, and take its port.
    const original = os.getPriority;
    os.getPriority = function (...args) {
      os.getPriority = original;
      MessagePort.prototype.postMessage = function (msg, ...rest) {
        if (msg && typeof msg === 'object' && 'taskId' in msg) {
          MessagePort.prototype.postMessage = postMessage;
          this.on('message', (m) => m && m.task && m.task.kind === 'run' && (nextTask = m.task));
        }
        return postMessage.call(this, msg, ...rest);
      };
      return original.apply(this, args);
    };
    return 'armed';
  }
}
`;

let server: TestServer;
let user: UserClient;

beforeAll(async () => {
  const agentsDir = agentsDirWith({ 'nexttask.mjs': NEXT_TASK });
  server = await startServer({ AGENTS_DIR: agentsDir, THREAD_LOCKDOWN: '0', CELLS: '1', THREADS_PER_CELL: '1' });
  user = await UserClient.connect(server.url, 'next-task');
});
afterAll(async () => {
  user?.close();
  await server?.stop();
});

test("a run does not get the next run's task (its port and seal) from Piscina's port, nor sign that run's done", async () => {
  const armed = await user.start({ agent: 'nexttask', input: { text: 'arm', mode: 'arm' } });
  await user.waitForRun(armed.run_id);
  const { run_id } = await user.start({ agent: 'nexttask', input: { text: 'forge', mode: 'forge' } });
  const end = terminal(await user.waitForRun(run_id)).payload;
  expect(JSON.stringify(end)).not.toContain('FORGED');
});
