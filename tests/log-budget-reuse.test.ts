/**
 * RUN_LOG_BYTES_PER_S is each run's: a thread's budget for what it prints starts afresh with each run on it. Kept per
 * thread, one user's run that printed its burst left the thread's next run (another user's, THREAD_REUSE=any) an
 * empty bucket: what that run printed within its own budget was dropped, and reported under its id (an attacker's-eye
 * review of the print budget).
 */
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';
import { BURST, RATE } from './helpers/log-budget';

const FILLER = `
export default class Filler {
  static agentName = 'filler';
  async execute(ctx) {
    const line = 'a'.repeat(1023) + '\\n';
    for (let i = 0; i < ctx.input.lines; i++) await new Promise((r) => process.stdout.write(line, r));
    return 'filled';
  }
}
`;
const TALKER = `
export default class Talker {
  static agentName = 'talker';
  async execute(ctx) {
    for (let i = 0; i < ctx.input.lines; i++) await new Promise((r) => process.stdout.write('talker ' + String(i).padStart(4, '0') + ' ' + 'b'.repeat(1010) + '\\n', r));
    return 'talked';
  }
}
`;


let server: TestServer;
let mallory: UserClient;
let victim: UserClient;

beforeAll(async () => {
  server = await startServer({
    AGENTS_DIR: agentsDirWith({ 'filler.mjs': FILLER, 'talker.mjs': TALKER }),
    CELLS: '1',
    // One thread, no spare, any user on it: the victim's run follows mallory's on her thread.
    THREADS_PER_CELL: '1',
    WARM_SPARE_THREADS: '0',
    THREAD_REUSE: 'any',
    RUN_LOG_BYTES_PER_S: String(RATE),
  });
  [mallory, victim] = await Promise.all([UserClient.connect(server.url, 'mallory'), UserClient.connect(server.url, 'victim')]);
}, 60_000);
afterAll(async () => {
  mallory?.close();
  victim?.close();
  await server?.stop();
});

test("a run that printed its thread's burst leaves the thread's next run, another user's, its own budget", async () => {
  // A few lines past the burst: the bucket is empty as the run ends.
  const filling = await mallory.start({ agent: 'filler', input: { lines: BURST / 1024 + 4 } });
  expect(terminal(await mallory.waitForRun(filling.run_id, 30_000)).payload.final_response).toBe('filled');
  // 32 KiB: a quarter of a run's burst.
  const talking = await victim.start({ agent: 'talker', input: { lines: 32 } });
  expect(terminal(await victim.waitForRun(talking.run_id, 30_000)).payload.final_response).toBe('talked');
  const workerOf = (runId: string) => server.logs.find((l) => l.msg === 'run finished' && l.run_id === runId)?.worker;
  expect(workerOf(talking.run_id)).toBe(workerOf(filling.run_id));

  const talked = () => server.logs.filter((l) => l.from === 'output' && typeof l.line === 'string' && l.line.startsWith('talker ')).length;
  for (const deadline = Date.now() + 3000; talked() < 32 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 100));
  expect(talked()).toBe(32);
}, 60_000);
