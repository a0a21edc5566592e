/**
 * The gate lowers a messages.list page to what fits in 1 MiB, so a page shorter than its `limit` is not the end of
 * the thread. The llm agent's loadContext (workers/llm/history.ts) stopped at the first short page: on a thread whose
 * first messages exceed 1 MiB it sent the model the thread's oldest messages, never found the run's own message, and
 * dropped everything after the first 1 MiB (helper-64). It now pages until a page is empty.
 */
import { startFakeOpenAI, type FakeOpenAI } from './helpers/fake-openai';
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';

const FILLER = `
export default class Filler {
  static agentName = 'filler';
  async execute(ctx) { return ctx.input.text + ':' + 'x'.repeat(600_000); }
}
`;

let fake: FakeOpenAI;
let server: TestServer;
beforeAll(async () => {
  fake = await startFakeOpenAI((req) => ({ steps: [{ text: `seen ${req.body.messages.length}` }] }));
  server = await startServer({
    AGENTS_DIR: agentsDirWith({ 'filler.mjs': FILLER }),
    LLM_BASE_URL: `${fake.url}/v1`,
    LLM_MODEL: 'fake-model',
    LLM_API_KEY: 'sk-fake-key',
    LLM_MAX_CONTEXT_MESSAGES: '10',
    CELLS: '1',
    THREADS_PER_CELL: '1',
    RUN_TIMEOUT_MS: '60000',
  });
}, 90_000);
afterAll(async () => {
  await server?.stop();
  await fake?.close();
});

test('the llm agent sees the latest answers of a thread whose history is over 1 MiB', async () => {
  const u = await UserClient.connect(server.url, 'llm-big-history');
  try {
    const first = await u.start({ agent: 'filler', input: 'fill one' });
    expect(terminal(await u.waitForRun(first.run_id)).payload.status).toBe('completed');
    const second = await u.start({ agent: 'filler', input: 'fill two', thread_id: first.thread_id });
    expect(terminal(await u.waitForRun(second.run_id)).payload.status).toBe('completed');
    const ask = await u.start({ agent: 'llm', input: 'context check', thread_id: first.thread_id });
    expect(terminal(await u.waitForRun(ask.run_id, 60_000)).payload.status).toBe('completed');

    const [req] = fake.requestsFor('context check');
    const shape = req.body.messages.map((m: any) => [m.role, String(m.content).slice(0, 8)]);
    expect(shape).toEqual([
      ['system', expect.any(String)],
      ['user', 'fill one'],
      ['assistant', 'fill one'],
      ['user', 'fill two'],
      ['assistant', 'fill two'],
      ['user', 'context '],
    ]);
  } finally {
    u.close();
  }
}, 180_000);
