/**
 * RUN_LOG_BYTES_PER_S at its edges (an attacker's-eye review of tests/log-budget.test.ts's budget):
 * - ctx.log measured a field with a `toJSON` as 0 bytes, and a getter as whatever it said the first time it was read;
 *   pino then read them again: a few bytes for the budget, megabytes for the log.
 * - a run that printed without heeding backpressure and ended left its output queued in its cell behind the budget's
 *   holds (its worker's writes go out in one batch): memory and timers of the cell's, for minutes after the run, that no
 *   run answers for (the worker is retired: its writes were pending).
 * - what a worker printed was counted as its raw bytes, and each of its lines becomes a record of the cell's in the log
 *   (110 bytes more), each control character 6 bytes of JSON: printing newlines alone, or control characters, wrote
 *   100 and 6 times the budget into the log.
 * - a chunk printed from a SharedArrayBuffer reaches the cell as a view of memory the worker still writes: counted as
 *   8 KiB of letters, written as 8,192 newlines a moment later (helper-100: 21 times the budget in the log).
 */
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';
import { BURST, RATE, allowance, droppedOf } from './helpers/log-budget';

const SMUGGLER = `
export default class Smuggler {
  static agentName = 'smuggler';
  async execute(ctx) {
    const big = 'z'.repeat(256 * 1024);
    for (let i = 0; i < 8; i++) {
      ctx.log.info('tojson', { blob: { toJSON: () => big } });
      let reads = 0;
      ctx.log.info('getter', { get blob() { return reads++ === 0 ? '' : big; } });
    }
    return 'smuggled';
  }
}
`;
const MUMBLER = `
export default class Mumbler {
  static agentName = 'mumbler';
  async execute(ctx) {
    const msg = ctx.input.kind === 'empty' ? '' : '\\u0001'.repeat(100);
    const end = Date.now() + 1000;
    for (let i = 0; Date.now() < end; i++) {
      ctx.log.info(msg);
      if (i % 100 === 0) await new Promise((r) => setImmediate(r));
    }
    return 'mumbled';
  }
}
`;
const FLOODER = `
export default class Flooder {
  static agentName = 'flooder';
  async execute() {
    const line = 'f'.repeat(1023) + '\\n';
    for (let i = 0; i < 4096; i++) process.stdout.write(line);
    return 'flooded';
  }
}
`;
const SHAPER = `
export default class Shaper {
  static agentName = 'shaper';
  async execute(ctx) {
    const chunk = ctx.input.kind === 'newlines' ? '\\n'.repeat(1024) : '\\u0001'.repeat(1023) + '\\n';
    // Each write waits for the one before it, held while the run prints past its budget (its own time).
    const end = Date.now() + 1000;
    while (Date.now() < end) await new Promise((r) => process.stdout.write(chunk, r));
    return 'shaped';
  }
}
`;
const FLIPPER = `
export default class Flipper {
  static agentName = 'flipper';
  async execute(ctx) {
    // Printed from shared memory: the cell receives a view of these bytes, not a copy of them.
    const bytes = new Uint8Array(new SharedArrayBuffer(8192)).fill(65);
    const end = Date.now() + 2000;
    while (Date.now() < end) {
      await new Promise((resolve) => {
        process.stdout.write(bytes, resolve);
        // Letters and newlines in turn while the cell counts the chunk and then writes it.
        const until = performance.now() + 20;
        while (performance.now() < until) {
          bytes.fill(10);
          bytes.fill(65);
        }
      });
    }
    return 'flipped';
  }
}
`;
const SAYER = `
export default class Sayer {
  static agentName = 'sayer';
  async execute(ctx) {
    console.log('sayer says next');
    return 'said';
  }
}
`;


let server: TestServer;
let mallory: UserClient;

beforeAll(async () => {
  server = await startServer({
    AGENTS_DIR: agentsDirWith({ 'smuggler.mjs': SMUGGLER, 'mumbler.mjs': MUMBLER, 'flooder.mjs': FLOODER, 'sayer.mjs': SAYER, 'shaper.mjs': SHAPER, 'flipper.mjs': FLIPPER }),
    CELLS: '1',
    // One thread, no spare: the flooder's next run is on its thread.
    THREADS_PER_CELL: '1',
    WARM_SPARE_THREADS: '0',
    RUN_LOG_BYTES_PER_S: String(RATE),
  });
  mallory = await UserClient.connect(server.url, 'mallory');
}, 60_000);
afterAll(async () => {
  mallory?.close();
  await server?.stop();
});

test('ctx.log fields with a toJSON or a getter are counted as they are written', async () => {
  const startedAt = Date.now();
  const run = await mallory.start({ agent: 'smuggler', input: 'x' });
  expect(terminal(await mallory.waitForRun(run.run_id, 30_000)).payload.final_response).toBe('smuggled');
  const elapsedMs = Date.now() - startedAt;
  const logged = server.logs.filter((l) => l.from === 'agent' && l.run_id === run.run_id);
  const loggedBytes = logged.reduce((n, l) => n + String(l.msg).length + JSON.stringify(l.fields ?? null).length, 0);
  expect(loggedBytes).toBeLessThanOrEqual(allowance(elapsedMs));
}, 60_000);

test.each(['empty', 'control'])('ctx.log lines are counted as they are written, the line around the message included (%s)', async (kind) => {
  const startedAt = Date.now();
  const run = await mallory.start({ agent: 'mumbler', input: { kind } });
  expect(terminal(await mallory.waitForRun(run.run_id, 30_000)).payload.final_response).toBe('mumbled');
  const elapsedMs = Date.now() - startedAt;
  const logged = server.logs.filter((l) => l.from === 'agent' && l.run_id === run.run_id);
  const loggedBytes = logged.reduce((n, l) => n + JSON.stringify(l).length + 1, 0);
  expect(logged.length).toBeGreaterThan(0);
  expect(loggedBytes).toBeLessThanOrEqual(allowance(elapsedMs));
}, 60_000);

test('what a run printed past its budget is not kept in its cell after the run ends; the next run prints at once', async () => {
  const flood = await mallory.start({ agent: 'flooder', input: 'x' });
  expect(terminal(await mallory.waitForRun(flood.run_id, 30_000)).payload.final_response).toBe('flooded');
  const endedAt = Date.now();
  // The flooder's 4 MiB beyond its burst: all dropped within seconds of its end (held at 8 KiB a second, the cell kept
  // them for minutes, dropping about 16 KiB a second).
  const expected = 4096 * 1024 - BURST - RATE * 10;
  while (droppedOf(server, flood.run_id) < expected && Date.now() - endedAt < 5000) await new Promise((r) => setTimeout(r, 100));
  expect(droppedOf(server, flood.run_id)).toBeGreaterThanOrEqual(expected);

  const next = await mallory.start({ agent: 'sayer', input: 'x' });
  expect(terminal(await mallory.waitForRun(next.run_id, 30_000)).payload.final_response).toBe('said');
  const said = () => server.logs.some((l) => l.from === 'output' && l.line === 'sayer says next');
  for (const deadline = Date.now() + 5000; !said() && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 100));
  expect(said()).toBe(true);
  expect(droppedOf(server, next.run_id)).toBe(0);
}, 60_000);

/** Runs `agent` to its end, then checks that what it printed reached the log as records within the budget. */
async function printsWithinBudget(agent: string, input: unknown, answer: string): Promise<void> {
  const before = server.logs.length;
  const startedAt = Date.now();
  const run = await mallory.start({ agent, input });
  expect(terminal(await mallory.waitForRun(run.run_id, 30_000)).payload.final_response).toBe(answer);
  await new Promise((r) => setTimeout(r, 1500));
  const elapsedMs = Date.now() - startedAt;
  const records = server.logs.slice(before).filter((l) => l.from === 'output');
  const logBytes = records.reduce((n, l) => n + JSON.stringify(l).length + 1, 0);
  expect(records.length).toBeGreaterThan(0);
  expect(logBytes).toBeLessThanOrEqual(allowance(elapsedMs));
}

test.each(['newlines', 'control'])('what a run prints is budgeted as what it becomes in the log (%s)', (kind) => printsWithinBudget('shaper', { kind }, 'shaped'), 60_000);

test('what a run prints from shared memory is budgeted as what is written, however the worker changes it meanwhile', () => printsWithinBudget('flipper', 'x', 'flipped'), 60_000);
