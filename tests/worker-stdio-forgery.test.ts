/**
 * What a worker prints reaches the cell as Node's own messages, on a port agent code holds (process.stdout's `kPort`
 * symbol): the cell's main thread took them as Node sends them. A chunk that is neither text nor bytes (written
 * through the worker's own stdout once its `objectMode` is set), a string chunk in the `buffer` encoding, a stream or a
 * message type Node never sends, an error message of bytes Node never wrote: each threw in the cell's main thread (or
 * in an 'error' event nobody listens to) and the cell exited, another user's run in it with it (it ran again). An
 * attacker's-eye review of the print budget, which trusts what comes on that port, found it.
 */
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';

const FORGER = `
export default class Forger {
  static agentName = 'forger';
  async execute(ctx) {
    const out = process.stdout;
    const port = out[Object.getOwnPropertySymbols(out).find((s) => s.description === 'kPort')];
    switch (ctx.input.kind) {
      case 'object-chunk':
        out._writableState.objectMode = true;
        out.write({ not: 'text' });
        break;
      case 'buffer-encoding':
        out.write('x', 'buffer');
        break;
      case 'stream-name':
        port.postMessage({ type: 'stdioPayload', stream: 'stdin', chunks: [{ chunk: 'x', encoding: 'utf8' }] });
        break;
      case 'message-type':
        port.postMessage({ type: 'bogus' });
        break;
      case 'error-bytes':
        port.postMessage({ type: 'errorMessage', error: new Uint8Array([99]) });
        break;
    }
    await new Promise((r) => setTimeout(r, 500));
    return 'forged';
  }
}
`;
const BYSTANDER = `
export default class Bystander {
  static agentName = 'bystander';
  async execute() {
    await new Promise((r) => setTimeout(r, 1500));
    return 'alive';
  }
}
`;

let server: TestServer;
let victim: UserClient;

beforeAll(async () => {
  server = await startServer({
    AGENTS_DIR: agentsDirWith({ 'forger.mjs': FORGER, 'bystander.mjs': BYSTANDER }),
    CELLS: '1',
    THREADS_PER_CELL: '2',
  });
  victim = await UserClient.connect(server.url, 'victim');
}, 60_000);
afterAll(async () => {
  victim?.close();
  await server?.stop();
});

test.each(['object-chunk', 'buffer-encoding', 'stream-name', 'message-type', 'error-bytes'])(
  "a worker's forged output message (%s) ends its own run, not its cell",
  async (kind) => {
    // A user of its own each time: one whose run killed its cell has its next runs sent to quarantine, alone.
    const mallory = await UserClient.connect(server.url, `mallory-${kind}`);
    const bystander = await victim.start({ agent: 'bystander', input: 'x' });
    await new Promise((r) => setTimeout(r, 200));
    const forger = await mallory.start({ agent: 'forger', input: { kind } });
    const forged = terminal(await mallory.waitForRun(forger.run_id, 30_000)).payload;
    mallory.close();
    // Its own run ends: its worker was terminated before the run could answer (the message dropped alone, the forger
    // went on and completed). Node 24 refuses a write in the `buffer` encoding inside the worker itself
    // (ERR_UNKNOWN_ENCODING, thrown to the agent): that message never leaves it, and the run fails as the agent's error.
    const refusedInWorker = kind === 'buffer-encoding' && Number(process.versions.node.split('.')[0]) >= 24;
    expect(forged).toMatchObject(
      refusedInWorker ? { status: 'failed', error: { code: 'AGENT_ERROR', message: expect.stringContaining('Unknown encoding: buffer') } } : { status: 'failed', error: { code: 'WORKER_CRASHED' } },
    );
    expect(terminal(await victim.waitForRun(bystander.run_id, 30_000)).payload.final_response).toBe('alive');
    const finished = server.logs.find((l) => l.msg === 'run finished' && l.run_id === bystander.run_id);
    expect(finished).toMatchObject({ status: 'completed', attempts: 1, restarts: 0 });
  },
  60_000,
);
