/**
 * Node 24's Web Locks (navigator.locks, worker_threads.locks) are the process's: every thread of a cell shares them.
 * (query() lists only the thread's own, but a request with `ifAvailable` is refused while another thread holds
 * the name): another user's worker in the same cell hears whether this run holds a lock of an agreed name, bit by
 * bit a channel between users, as with a BroadcastChannel (refused, host-guards.ts); or holds one another user's
 * code waits for. Lockdown on (the default). Nothing to test where Node has no Web Locks (20, 22).
 */
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';

const LOCKER = `
export default class Locker {
  static agentName = 'locker';
  async execute(ctx) {
    const locks = globalThis.navigator?.locks;
    if (!locks) return { heard: null, unsupported: true };
    if (ctx.input.mode === 'hold') {
      // Held for 3 s: the signal.
      try {
        await locks.request('atoll-channel', () => new Promise((resolve) => setTimeout(resolve, 3000)));
        return { held: true };
      } catch (err) {
        return { held: err.code ?? String(err) };
      }
    }
    // The lock is taken elsewhere: another thread of the cell holds it.
    for (let i = 0; i < 40; i++) {
      try {
        if (await locks.request('atoll-channel', { ifAvailable: true }, (lock) => lock === null)) return { heard: true };
      } catch (err) {
        return { heard: err.code ?? String(err) };
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return { heard: false };
  }
}
`;

let server: TestServer;
let holder: UserClient;
let reader: UserClient;

beforeAll(async () => {
  const agentsDir = agentsDirWith({ 'locker.mjs': LOCKER });
  server = await startServer({ AGENTS_DIR: agentsDir, CELLS: '1', THREADS_PER_CELL: '2' });
  [holder, reader] = await Promise.all([UserClient.connect(server.url, 'locks-holder'), UserClient.connect(server.url, 'locks-reader')]);
});
afterAll(async () => {
  holder?.close();
  reader?.close();
  await server?.stop();
});

test("a run cannot tell whether another user's worker holds a Web Lock", async () => {
  const holding = await holder.start({ agent: 'locker', input: { text: 'hold', mode: 'hold' } });
  const reading = await reader.start({ agent: 'locker', input: { text: 'read', mode: 'read' } });
  const [, read] = await Promise.all([holder.waitForRun(holding.run_id), reader.waitForRun(reading.run_id)]);
  expect(terminal(read).payload.final_response.heard).not.toBe(true);
});
