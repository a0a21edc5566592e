/**
 * RUN_LOG_BYTES_PER_S at its edges (an attacker's-eye review of tests/log-budget.test.ts's budget):
 * - ctx.log measured a field with a `toJSON` as 0 bytes, and a getter as whatever it said the first time it was read;
 *   pino then read them again: a few bytes for the budget, megabytes for the log.
 */
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';

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

const RATE = 8192;
const BURST = 16 * RATE;

let server: TestServer;
let mallory: UserClient;

beforeAll(async () => {
  server = await startServer({
    AGENTS_DIR: agentsDirWith({ 'smuggler.mjs': SMUGGLER }),
    CELLS: '1',
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
  expect(loggedBytes).toBeLessThanOrEqual(BURST + (RATE * elapsedMs) / 1000);
}, 60_000);
