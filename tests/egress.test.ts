/**
 * AGENT_EGRESS_ALLOW end to end: the front's setting reaches every worker, so an agent may reach exactly the
 * subnets it names (here the front itself on 127.0.0.1) and nothing else of the host (::1 is not named). The
 * default, where the same fetch is refused, is escape.test.ts's.
 */
import path from 'node:path';
import { startServer, ROOT, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';

let server: TestServer;
let client: UserClient;

beforeAll(async () => {
  server = await startServer({ AGENTS_DIR: path.join(ROOT, 'tests/fixtures/escape-agents'), CELLS: '1', THREADS_PER_CELL: '1', AGENT_EGRESS_ALLOW: '127.0.0.1' });
  client = await UserClient.connect(server.url, 'egress-user');
});
afterAll(async () => {
  client?.close();
  await server?.stop();
});

/** What the agent got, and what the run's isolation report says the walls refused. */
async function fetched(url: string): Promise<{ got: unknown; refused: string[] }> {
  const { run_id } = await client.start({ agent: 'fetcher', input: { url } });
  const end = terminal(await client.waitForRun(run_id));
  expect(end.payload.status).toBe('completed');
  const view = (await client.http('GET', `/v1/runs/${run_id}`)).body;
  return { got: end.payload.final_response, refused: view.isolation.refused };
}

test('an allowed subnet is reached from agent code; the rest of the host is still refused', async () => {
  expect(await fetched(`http://127.0.0.1:${server.port}/healthz`)).toEqual({ got: { status: 200 }, refused: [] });
  expect(await fetched(`http://[::1]:${server.port}/healthz`)).toEqual({ got: { code: 'EACCES' }, refused: ['egress'] });
});
