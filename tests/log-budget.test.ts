/**
 * RUN_LOG_BYTES_PER_S: what a worker thread prints, and apart what a run logs through ctx.log, reaches the log only
 * within its budget (a burst of 16 seconds' worth, then that rate); the rest is dropped and counted in a line that
 * names the run, and a printer's stream is held meanwhile (it is slowed to about its budget). A run printing without pause wrote 18 MB a second into the front's log before (helper-93): every
 * user's log, the host's disk. Another user's prints in the same cell meanwhile all arrive.
 */
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';
import { BURST, DROP_RATE, RATE, allowance, printReports } from './helpers/log-budget';

const PRINTER = `
export default class Printer {
  static agentName = 'printer';
  async execute(ctx) {
    const chunk = ('x'.repeat(100) + '\\n').repeat(20);
    const end = Date.now() + ctx.input.ms;
    while (Date.now() < end) if (!process.stdout.write(chunk)) await new Promise((r) => process.stdout.once('drain', r));
    return 'printed';
  }
}
`;
const LOGGER = `
export default class Logger {
  static agentName = 'logger';
  async execute(ctx) {
    const end = Date.now() + ctx.input.ms;
    ctx.log.info('a long one', { blob: 'z'.repeat(10000) });
    for (let i = 0; Date.now() < end; i++) {
      ctx.log.info('y'.repeat(100), { i });
      if (i % 100 === 0) await new Promise((r) => setImmediate(r));
    }
    return 'logged';
  }
}
`;
const NEIGHBOUR = `
export default class Neighbour {
  static agentName = 'neighbour';
  async execute(ctx) {
    for (let i = 0; i < 20; i++) {
      console.log('neighbour line ' + i);
      await new Promise((r) => setTimeout(r, 100));
    }
    return 'done';
  }
}
`;


let server: TestServer;
let mallory: UserClient;
let victim: UserClient;

beforeAll(async () => {
  server = await startServer({
    AGENTS_DIR: agentsDirWith({ 'printer.mjs': PRINTER, 'logger.mjs': LOGGER, 'neighbour.mjs': NEIGHBOUR }),
    CELLS: '1',
    THREADS_PER_CELL: '3',
    RUN_LOG_BYTES_PER_S: String(RATE),
  });
  [mallory, victim] = await Promise.all([UserClient.connect(server.url, 'mallory'), UserClient.connect(server.url, 'victim')]);
}, 60_000);
afterAll(async () => {
  mallory?.close();
  victim?.close();
  await server?.stop();
});


test('a run printing, and one logging, without pause reach the log within RUN_LOG_BYTES_PER_S; the rest is counted; a neighbour is untouched', async () => {
  const startedAt = Date.now();
  const [printing, logging, neighbour] = await Promise.all([
    mallory.start({ agent: 'printer', input: { ms: 3000 } }),
    mallory.start({ agent: 'logger', input: { ms: 3000 } }),
    victim.start({ agent: 'neighbour', input: 'hi' }),
  ]);
  expect(terminal(await mallory.waitForRun(printing.run_id, 60_000)).payload.final_response).toBe('printed');
  expect(terminal(await mallory.waitForRun(logging.run_id, 60_000)).payload.final_response).toBe('logged');
  expect(terminal(await victim.waitForRun(neighbour.run_id, 60_000)).payload.final_response).toBe('done');
  // The report of what was dropped comes within a second of the last drop.
  const reportsOf = () => printReports(server);
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 200))) {
    if (reportsOf().length > 0 && server.logs.some((l) => l.msg === 'ctx.log lines dropped past RUN_LOG_BYTES_PER_S')) break;
  }
  await new Promise((r) => setTimeout(r, 1500));
  // What a worker printed keeps arriving after its run ends (its stream was held): the budget holds over all of it.
  const elapsedMs = Date.now() - startedAt;

  const printed = server.logs.filter((l) => l.from === 'output' && typeof l.line === 'string' && (l.line as string).startsWith('xxxx'));
  const printedBytes = printed.reduce((n, l) => n + (l.line as string).length + 1, 0);
  const reports = reportsOf();
  const droppedPrinted = reports.reduce((n, l) => n + l.dropped_bytes, 0);
  const logged = server.logs.filter((l) => l.from === 'agent' && l.run_id === logging.run_id);
  const loggedEnd = server.logs.find((l) => l.msg === 'ctx.log lines dropped past RUN_LOG_BYTES_PER_S');
  console.log(
    `in ${elapsedMs} ms: printed ${printedBytes} bytes reached the log, ${droppedPrinted} dropped (${reports.length} reports); ` +
      `ctx.log: ${logged.length} lines reached it, ${String(loggedEnd?.dropped_lines)} (${String(loggedEnd?.dropped_bytes)} bytes) dropped`,
  );

  expect(printedBytes).toBeGreaterThan(0);
  expect(printedBytes).toBeLessThanOrEqual(allowance(elapsedMs));
  expect(droppedPrinted).toBeGreaterThan(0);
  // The printer was slowed, its writes held: its cell received no more than DROP_RATE of what it dropped (not held,
  // it dropped ~100 MB a second on an idle machine; a loaded one only makes it print less).
  expect(droppedPrinted).toBeLessThanOrEqual(BURST + (DROP_RATE * elapsedMs) / 1000);
  expect(reports.every((r) => r.run_id === printing.run_id && typeof r.worker === 'number')).toBe(true);

  // Each logged line counts its message and its fields.
  const loggedBytes = logged.reduce((n, l) => n + String(l.msg).length + JSON.stringify(l.fields).length, 0);
  expect(logged.length).toBeGreaterThan(0);
  expect(loggedBytes).toBeLessThanOrEqual(allowance(elapsedMs));
  expect(loggedEnd).toMatchObject({ run_id: logging.run_id });
  // A line over PIPE_BUF is cut to fit in one atomic write (workers/worker/log-line.ts), its ids kept.
  expect(logged.find((l) => l.msg === 'a long one')).toMatchObject({ cut: true, fields: expect.stringMatching(/^\[cut: \d+ bytes\]$/) });
  expect(loggedEnd!.dropped_lines as number).toBeGreaterThan(logged.length);

  // Another user's run in the same cell printed within its own thread's budget: every line arrived.
  const neighbourLines = server.logs.filter((l) => l.from === 'output' && typeof l.line === 'string' && (l.line as string).startsWith('neighbour line'));
  expect(neighbourLines.map((l) => l.line)).toEqual(Array.from({ length: 20 }, (_, i) => `neighbour line ${i}`));
}, 120_000);
