/**
 * What agent code prints reaches the log as data, in lines of its cell's (workers/cell/worker-output.ts), and the
 * front's own lines stay the front's. The cell's stdout is the front's (inherited): the cell wrote a batch of printed
 * lines in one write of up to megabytes, which a pipe does not keep whole (only writes of at most PIPE_BUF, 4 KiB,
 * are atomic), so a line the front wrote meanwhile landed inside a cell's line: neither parsed any more, and a run
 * that printed enough made the front's lines (its own 'run finished', a refusal naming it) vanish from a JSON log.
 */
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';

const PRINTER = `
export default class Printer {
  static agentName = 'printer';
  async execute(ctx) {
    const chunk = ('x'.repeat(100) + '\\n').repeat(600);
    const end = Date.now() + ctx.input.ms;
    while (Date.now() < end) if (!process.stdout.write(chunk)) await new Promise((r) => process.stdout.once('drain', r));
    return 'printed';
  }
}
`;

let server: TestServer;
let mallory: UserClient;
let victim: UserClient;

beforeAll(async () => {
  server = await startServer({ AGENTS_DIR: agentsDirWith({ 'printer.mjs': PRINTER }), CELLS: '2', THREADS_PER_CELL: '1', RUN_LOG_BYTES_PER_S: '0' });
  [mallory, victim] = await Promise.all([UserClient.connect(server.url, 'mallory'), UserClient.connect(server.url, 'victim')]);
}, 60_000);
afterAll(async () => {
  mallory?.close();
  victim?.close();
  await server?.stop();
});

test("a run printing without pause never breaks the front's log lines", async () => {
  const printing = mallory.start({ agent: 'printer', input: { ms: 4000 } });
  // The front writes its lines meanwhile: a line per run that ends.
  const ends: Promise<unknown>[] = [];
  for (let i = 0; i < 30; i++) {
    const { run_id } = await victim.start({ agent: 'echo', input: `run ${i}` });
    ends.push(victim.waitForRun(run_id));
    await new Promise((r) => setTimeout(r, 100));
  }
  await Promise.all(ends);
  const { run_id } = await printing;
  expect(terminal(await mallory.waitForRun(run_id)).payload.final_response).toBe('printed');
  await new Promise((r) => setTimeout(r, 500));
  const broken = server
    .stdout()
    .split('\n')
    .filter((line) => line.includes('"process":"front"'))
    .filter((line) => {
      try {
        JSON.parse(line);
        return false;
      } catch {
        return true;
      }
    });
  console.log(`front lines broken by the cell's output: ${broken.length}`);
  expect(broken.map((l) => l.slice(0, 200))).toEqual([]);
}, 90_000);
