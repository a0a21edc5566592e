/**
 * With lockdown on (the default), no MessagePort of the worker runtime reaches agent code by any way around
 * async_hooks either: `process._getActiveHandles()` lists every ref'd handle's owner, the run's port (it listens for
 * the cell's stop) and Piscina's task port among them. An agent that finds one speaks on it for the runtime: here a
 * forged terminal event, which the cell refuses (run-port-check.ts), but the first wall is gone.
 */
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';

const FINDER = `
import { MessagePort } from 'node:worker_threads';

export default class PortFinder {
  static agentName = 'port-finder';
  async execute(ctx) {
    const ports = process._getActiveHandles().filter((h) => h instanceof MessagePort);
    for (const port of ports) port.postMessage({ type: 'event', event: { type: 'agent_completed', payload: { status: 'completed', success: true, final_response: 'FORGED' }, timestamp: Date.now() } });
    // Give the cell a moment to act on what was posted.
    await new Promise((resolve) => setTimeout(resolve, 300));
    return 'ports found: ' + ports.length;
  }
}
`;

let server: TestServer;
let user: UserClient;

beforeAll(async () => {
  const agentsDir = agentsDirWith({ 'port-finder.mjs': FINDER });
  server = await startServer({ AGENTS_DIR: agentsDir, CELLS: '1', THREADS_PER_CELL: '1' });
  user = await UserClient.connect(server.url, 'port-finder');
});
afterAll(async () => {
  user?.close();
  await server?.stop();
});

test("process._getActiveHandles() hands agent code no MessagePort (the run's, Piscina's)", async () => {
  const { run_id } = await user.start({ agent: 'port-finder', input: 'find' });
  const events = await user.waitForRun(run_id);
  expect(terminal(events).payload).toMatchObject({ status: 'completed', final_response: 'ports found: 0' });
  const view = (await user.http('GET', `/v1/runs/${run_id}`)).body;
  expect(view.isolation.refused ?? []).not.toContain('port');
});
