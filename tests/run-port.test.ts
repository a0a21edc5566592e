/**
 * The run's port is the worker runtime's channel to its cell, and agent code can get hold of it (here, with
 * THREAD_LOCKDOWN=0, by patching MessagePort.prototype.postMessage; async_hooks is the way with lockdown on, which
 * tests/escape.test.ts shows closed). Whatever it posts there is checked by the cell as if agent code wrote it
 * (workers/cell/run-port-check.ts): no event ctx.emit would refuse, no result over its cap, no report whose
 * labels the front would count reaches the front; the run fails, its report names the wall `port`, and its worker
 * is retired. Another user's run carries on.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, type TestServer } from './helpers/server';
import { UserClient, httpCall, terminal, type Envelope } from './helpers/client';
import { FIND_RUN_PORT } from './helpers/agent-snippets';

const FORGER = `
import { MessagePort, threadId } from 'node:worker_threads';

export default class Forger {
  static agentName = 'forger';
  async execute(ctx) {
${FIND_RUN_PORT}
    const post = (msg) => original.call(port, msg);
    const event = (type, payload) => post({ type: 'event', event: { type, payload, timestamp: Date.now() } });
    const report = { leaks: {}, globals: [], contaminated: false, recycled: null, cleanupMs: 1 };
    const stats = { workerId: threadId, activeContexts: 0, liveAgentInstances: 0, dbClients: 0 };
    switch (ctx.input.mode) {
      case 'terminal':
        event('agent_completed', { status: 'completed', success: true, final_response: 'FORGED terminal event' });
        break;
      case 'oversized':
        event('partial_result', { text: 'x'.repeat(200000) });
        break;
      case 'flood':
        for (let i = 0; i < 40; i++) event('partial_result', { text: 'flood ' + i });
        break;
      case 'bytes':
        // 10 events (under MAX_EVENTS_PER_RUN), each under MAX_EVENT_BYTES: 600 kB in all.
        for (let i = 0; i < 10; i++) event('agent_thinking', { reasoning: String(i).repeat(60000) });
        break;
      case 'bigint':
        post({ type: 'done', outcome: { status: 'completed', result: { n: 10n }, executionTimeMs: 1 }, stats, report });
        break;
      case 'labels': {
        const leaks = Object.fromEntries(Array.from({ length: 500 }, (_, i) => ['leak_' + i, 1]));
        const refused = Array.from({ length: 500 }, (_, i) => 'wall_' + i);
        post({ type: 'done', outcome: { status: 'completed', result: 'labels', executionTimeMs: 1 }, stats, report: { ...report, leaks, refused, recycled: 'made_up_reason' } });
        break;
      }
      case 'refused':
        post({ type: 'refused', reason: 'user_switch' });
        break;
      case 'malformed_db':
        post({ type: 'db_query', id: 1000000, kind: 'drop everything', query: 42 });
        break;
      case 'unclonable_db':
        // Crosses a MessagePort, but not the front's channel: read back there, it threw and the front exited.
        post({ type: 'db_query', id: 1000001, kind: 'query', query: { sql: 'SELECT 1', args: [new WebAssembly.Module(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]))], argTypes: [] } });
        break;
      case 'hide_walls':
      case 'hide_walls_recycled':
        // Probes a wall (a signal to pid 1: refused, 'signal' in the real report), then sends a done of its own with a
        // clean report before the runtime's: settled on the Piscina answer, which usually beats the runtime's done, or at
        // once when the report says its worker is to be recycled ('max_runs', a reason the runtime gives).
        try {
          process.kill(1, 0);
        } catch {}
        post({ type: 'done', outcome: { status: 'completed', result: 'FORGED done', executionTimeMs: 1 }, stats: { ...stats, activeContexts: 1, liveAgentInstances: 1 }, report: ctx.input.mode === 'hide_walls' ? report : { ...report, recycled: 'max_runs' } });
        return 'returned normally';
      case 'deep_event':
      case 'deep_result':
      case 'unreadable': {
        // Nested past what the front's channel reads back (~1,950 objects): posted as it is, the cell forwarded it
        // and the front exited. Past ~1,955 the cell's port cannot read it back either ('unreadable').
        let deep = { leaf: 1 };
        for (let i = 0; i < (ctx.input.mode === 'unreadable' ? 3000 : 1930); i++) deep = { x: deep };
        if (ctx.input.mode === 'deep_result') post({ type: 'done', outcome: { status: 'completed', result: { deep }, executionTimeMs: 1 }, stats, report });
        else event('tool_completed', { tool_call_id: 't', tool_name: 'deep', status: 'success', results: deep, execution_time_ms: 1 });
        break;
      }
      case 'shared_memory_db':
        post({ type: 'db_query', id: 1000002, kind: 'query', query: { sql: 'SELECT 1', args: [new SharedArrayBuffer(8)], argTypes: [] } });
        break;
    }
    // Give the cell a moment to answer before returning what ctx.emit would have allowed.
    await new Promise((resolve) => setTimeout(resolve, 300));
    return 'returned normally';
  }
}
`;

let server: TestServer;
let forger: UserClient;
let bystander: UserClient;

beforeAll(async () => {
  const agentsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-run-port-'));
  fs.writeFileSync(path.join(agentsDir, 'forger.mjs'), FORGER);
  // MAX_EVENTS_PER_RUN=20, MAX_EVENT_BYTES=65536 and MAX_RUN_EVENT_BYTES=200000: a flood of 40, an event of 200 kB and
  // 10 events of 60 kB are over them.
  server = await startServer({ AGENTS_DIR: agentsDir, THREAD_LOCKDOWN: '0', MAX_EVENTS_PER_RUN: '20', MAX_RUN_EVENT_BYTES: '200000', CELLS: '1', THREADS_PER_CELL: '2' });
  [forger, bystander] = await Promise.all([UserClient.connect(server.url, 'port-forger'), UserClient.connect(server.url, 'port-bystander')]);
});
afterAll(async () => {
  forger?.close();
  bystander?.close();
  await server?.stop();
});

async function forged(mode: string): Promise<{ events: Envelope[]; view: any }> {
  const { run_id } = await forger.start({ agent: 'forger', input: { text: mode, mode } });
  const events = await forger.waitForRun(run_id);
  const view = (await forger.http('GET', `/v1/runs/${run_id}`)).body;
  return { events, view };
}

function expectRefused({ events, view }: { events: Envelope[]; view: any }): void {
  const end = terminal(events);
  expect(end.payload).toMatchObject({ status: 'failed', error: { code: 'AGENT_ERROR', message: expect.stringMatching(/message the worker never sends/) } });
  // One terminal event, the last: nothing the agent forged among them.
  expect(events.filter((e) => e.type === 'agent_completed')).toHaveLength(1);
  expect(JSON.stringify(events)).not.toContain('FORGED');
  expect(view.isolation).toMatchObject({ recycled: 'invalid_message', refused: expect.arrayContaining(['port']) });
}

test('an event ctx.emit would refuse (a terminal event of its own) never reaches the front', async () => {
  expectRefused(await forged('terminal'));
});

test('an event over MAX_EVENT_BYTES is refused by the cell too', async () => {
  const got = await forged('oversized');
  expectRefused(got);
  expect(Math.max(...got.events.map((e) => JSON.stringify(e.payload).length))).toBeLessThan(65_536);
});

test('events past MAX_EVENTS_PER_RUN are refused by the cell too', async () => {
  const got = await forged('flood');
  expectRefused(got);
  expect(got.events.filter((e) => e.type === 'partial_result' || e.type === 'agent_thinking').length).toBeLessThanOrEqual(20);
});

test('events past MAX_RUN_EVENT_BYTES in all are refused by the cell too', async () => {
  const got = await forged('bytes');
  expectRefused(got);
  expect(got.events.reduce((n, e) => n + (e.type === 'agent_thinking' ? JSON.stringify(e.payload).length : 0), 0)).toBeLessThanOrEqual(200_000);
});

test('an outcome that is not JSON (a BigInt in the result) fails the run instead of leaving it running', async () => {
  expectRefused(await forged('bigint'));
});

test("a report's made-up kinds, walls and reasons never become metric labels", async () => {
  expectRefused(await forged('labels'));
  const metrics = (await httpCall(server.url, 'GET', '/metrics')).body as string;
  expect(metrics).not.toMatch(/leak_\d|wall_\d|made_up_reason/);
  expect(metrics).toMatch(/^atoll_walls_hit_total\{wall="port",node="[^"]+"\} [1-9]/m);
});

test("a refusal sent after the run started is not the worker's: the run is not sent around again", async () => {
  expectRefused(await forged('refused'));
});

test.each(['malformed_db', 'unclonable_db', 'shared_memory_db'])('a db_query that is not plain data (%s) never leaves the cell, and the front and the cell stay up', async (mode) => {
  const ready = (await httpCall(server.url, 'GET', '/readyz')).status;
  expectRefused(await forged(mode));
  expect((await httpCall(server.url, 'GET', '/healthz')).status).toBe(200);
  expect(server.proc.exitCode).toBeNull();
  expect((await httpCall(server.url, 'GET', '/readyz')).status).toBe(ready);
  expect(server.logs.filter((l) => l.msg === 'cell died')).toEqual([]);
});

// The cell's channel to the front reads nesting by recursion: ~1,930 nested objects made it throw where nothing
// catches it, and the front exited (every user's runs and sockets with it). An event or a result nested deeper than
// MAX_OUTPUT_DEPTH is refused; one the cell's port cannot read back at all ('messageerror') is refused too (the run
// waited for its deadline, its done unread).
test.each(['deep_event', 'deep_result', 'unreadable'])('a message nested thousands deep (%s) is refused, and the front and the cell stay up', async (mode) => {
  expectRefused(await forged(mode));
  expect(server.proc.exitCode).toBeNull();
  expect((await httpCall(server.url, 'GET', '/healthz')).status).toBe(200);
  expect(server.logs.filter((l) => l.msg === 'cell died')).toEqual([]);
});

// The agent signals pid 1 (refused: the wall `signal`), then posts a done of its own with a clean report before its
// runtime's: without the run's seal it is refused, so the run fails naming `port` (a louder alarm than the wall it
// tried to hide), and never takes the forged outcome or report. Three times: the order against Piscina's answer varies.
test.each(['hide_walls', 'hide_walls_recycled'])("a done of the agent's own, then its runtime's (%s): refused without the run's seal, neither the forged outcome nor its clean report is taken", async (mode) => {
  for (let i = 0; i < 3; i++) {
    const got = await forged(mode);
    expectRefused(got);
    expect(terminal(got.events).payload.error.message).toMatch(/seal/);
  }
});

test('another user carries on', async () => {
  const { run_id } = await bystander.start({ agent: 'echo', input: 'still here' });
  expect(terminal(await bystander.waitForRun(run_id)).payload).toMatchObject({ status: 'completed', final_response: 'still here' });
});
