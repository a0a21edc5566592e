/**
 * What a run sends may nest at most MAX_OUTPUT_DEPTH levels (protocol/json-nesting.ts): an event's payload or a
 * result nested ~1,930 objects deep passed every check and made the front's channel from its cell throw, so the
 * front exited. Through ctx.emit and execute()'s return the agent gets a clear error; the raw port is
 * tests/run-port.test.ts's.
 */
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, httpCall, terminal } from './helpers/client';

const DEEP = `
export default class Deep {
  static agentName = 'deep';
  async execute(ctx) {
    let v = { leaf: 1 };
    for (let i = 1; i < ctx.input.depth; i++) v = { x: v };
    if (ctx.input.where === 'event') {
      try {
        ctx.emit('tool_completed', { tool_call_id: 't', tool_name: 'n', status: 'success', results: v, execution_time_ms: 1 });
      } catch (err) {
        return 'refused: ' + err.message;
      }
      return 'emitted';
    }
    return { v };
  }
}
`;

let server: TestServer;
let user: UserClient;

beforeAll(async () => {
  server = await startServer({ AGENTS_DIR: agentsDirWith({ 'deep.mjs': DEEP }), CELLS: '1', THREADS_PER_CELL: '1' });
  user = await UserClient.connect(server.url, 'deep');
});
afterAll(async () => {
  user?.close();
  await server?.stop();
});

async function run(where: string, depth: number) {
  const { run_id } = await user.start({ agent: 'deep', input: { text: 'x', where, depth } });
  return { events: await user.waitForRun(run_id), end: terminal(await user.waitForRun(run_id)).payload };
}

// `results` is the payload's second level: 63 levels in it make 64 in all.
test('an event nested 64 levels is delivered; one level more is refused into the agent, and the front stays up', async () => {
  const ok = await run('event', 63);
  expect(ok.end).toMatchObject({ status: 'completed', final_response: 'emitted' });
  expect(ok.events.some((e) => e.type === 'tool_completed')).toBe(true);
  const deeper = await run('event', 64);
  expect(deeper.end).toMatchObject({ status: 'completed', final_response: expect.stringMatching(/deeper than 64 levels/) });
  expect(deeper.events.some((e) => e.type === 'tool_completed')).toBe(false);
  const thousands = await run('event', 1930);
  expect(thousands.end.final_response).toMatch(/deeper than 64 levels/);
  expect(server.proc.exitCode).toBeNull();
  expect((await httpCall(server.url, 'GET', '/healthz')).status).toBe(200);
});

test('a result nested deeper than 64 levels fails the run AGENT_ERROR; the front stays up', async () => {
  expect((await run('result', 63)).end).toMatchObject({ status: 'completed' });
  for (const depth of [64, 1930]) {
    expect((await run('result', depth)).end).toMatchObject({ status: 'failed', error: { code: 'AGENT_ERROR', message: expect.stringMatching(/deeper than 64 levels/) } });
  }
  expect(server.proc.exitCode).toBeNull();
  expect((await httpCall(server.url, 'GET', '/healthz')).status).toBe(200);
});
