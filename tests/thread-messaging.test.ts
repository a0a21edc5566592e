/**
 * worker_threads.postMessageToThread (Node 20.20, 22.5+, 24) delivers a value to any thread of the process by its
 * id, through the cell's main thread, as a 'workerMessage' event on that thread's `process`: another user's worker
 * in the same cell hears what this run sends, exactly as with a BroadcastChannel (host-guards.ts refuses that one).
 * Lockdown on (the default). Thread ids are small integers: the sender tries them all.
 */
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';

const MESSENGER = `
import wt from 'node:worker_threads';

export default class Messenger {
  static agentName = 'messenger';
  async execute(ctx) {
    if (ctx.input.mode === 'listen') {
      let heard = null;
      const onMessage = (value) => (heard = value);
      process.on('workerMessage', onMessage);
      for (let i = 0; i < 60 && heard === null; i++) await new Promise((resolve) => setTimeout(resolve, 100));
      process.off('workerMessage', onMessage);
      return { heard };
    }
    const results = await Promise.all(
      Array.from({ length: 16 }, (_, id) => id)
        .filter((id) => id !== wt.threadId)
        .map((id) => Promise.resolve().then(() => wt.postMessageToThread(id, { secret: 'data of ' + ctx.userId }, 1000)).then(() => 'delivered', (err) => err.code)),
    );
    return { results: [...new Set(results)] };
  }
}
`;

let server: TestServer;
let listener: UserClient;
let sender: UserClient;

beforeAll(async () => {
  const agentsDir = agentsDirWith({ 'messenger.mjs': MESSENGER });
  // One cell, two workers: each user gets one of them (THREAD_REUSE=same_user).
  server = await startServer({ AGENTS_DIR: agentsDir, CELLS: '1', THREADS_PER_CELL: '2' });
  [listener, sender] = await Promise.all([UserClient.connect(server.url, 'messaging-listener'), UserClient.connect(server.url, 'messaging-sender')]);
});
afterAll(async () => {
  listener?.close();
  sender?.close();
  await server?.stop();
});

test("a run cannot send another user's worker a value with worker_threads.postMessageToThread", async () => {
  const listening = await listener.start({ agent: 'messenger', input: { text: 'listen', mode: 'listen' } });
  await new Promise((resolve) => setTimeout(resolve, 800));
  const sending = await sender.start({ agent: 'messenger', input: { text: 'send', mode: 'send' } });
  const [heard, sent] = await Promise.all([listener.waitForRun(listening.run_id), sender.waitForRun(sending.run_id)]);
  expect(JSON.parse(JSON.stringify(terminal(heard).payload.final_response))).toEqual({ heard: null });
  expect(terminal(sent).payload.final_response).toEqual({ results: ['ERR_ACCESS_DENIED'] });
});
