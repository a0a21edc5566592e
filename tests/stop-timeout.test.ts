/**
 * stop_agent and the wall timeout: a run ends within 1 s of its stop even when its agent ignores the
 * signal or blocks its thread; a queued run is stopped before it starts; stops are owner-only.
 */
import { FIXTURE_AGENTS, startServer, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';

let server: TestServer;
let u: UserClient;

beforeAll(async () => {
  server = await startServer({ AGENTS_DIR: FIXTURE_AGENTS, ENABLE_CHAOS_AGENTS: '1', CELLS: '1', THREADS_PER_CELL: '2', RUN_TIMEOUT_MS: '2500' });
  u = await UserClient.connect(server.url, 'stopper');
});
afterAll(async () => {
  u.close();
  await server.stop();
});

test.each([
  ['slow', 'honours the signal'],
  ['hang_async', 'ignores the signal'],
  ['hang', 'blocks its thread'],
])('stop_agent ends a %s run (agent %s) within 1 s', async (mode) => {
  const { run_id } = await u.start({ agent: 'chaos', input: { mode, text: mode, ms: 60_000 } });
  await u.waitForEvent(run_id, 'agent_thinking');
  const stoppedAt = Date.now();
  const ack = await u.ack('stop_agent', { run_id });
  expect(ack).toMatchObject({ run_id });
  const end = terminal(await u.waitForRun(run_id, 5000));
  expect(Date.parse(end.timestamp) - stoppedAt).toBeLessThan(1000);
  expect(end.payload).toMatchObject({ status: 'cancelled', success: false, error: { code: 'CANCELLED' } });
  const run = await u.http('GET', `/v1/runs/${run_id}`);
  expect(run.body).toMatchObject({ status: 'cancelled', error: { code: 'CANCELLED' } });
});

test.each(['hang', 'hang_async'])('a %s run is ended at its deadline with TIMEOUT', async (mode) => {
  const { run_id } = await u.start({ agent: 'chaos', input: { mode, text: mode } });
  const started = await u.waitForEvent(run_id, 'agent_started');
  const end = terminal(await u.waitForRun(run_id, 10_000));
  expect(end.payload).toMatchObject({ status: 'timeout', error: { code: 'TIMEOUT' } });
  const took = Date.parse(end.timestamp) - Date.parse(started.timestamp);
  expect(took).toBeGreaterThanOrEqual(2500);
  expect(took).toBeLessThan(2500 + 500 + 1500);
});

test('a queued run is stopped before it starts, and the threads keep serving', async () => {
  const blockers = await Promise.all([0, 1].map(() => u.start({ agent: 'chaos', input: { mode: 'slow', text: 's', ms: 800 } })));
  const queued = await u.start({ agent: 'echo', input: 'never runs' });
  await u.ack('stop_agent', { run_id: queued.run_id });
  const events = await u.waitForRun(queued.run_id);
  expect(events.map((e) => e.type)).toEqual(['message_received', 'agent_completed']);
  expect(terminal(events).payload).toMatchObject({ status: 'cancelled', error: { code: 'CANCELLED' } });
  for (const b of blockers) expect(terminal(await u.waitForRun(b.run_id)).payload.status).toBe('completed');
});

test('a run stopped mid-stream keeps its partial answer as an interrupted message; the thread goes on', async () => {
  const { run_id, thread_id } = await u.start({ agent: 'streamer', input: { text: 'p', parts: 40, delay: 50 } });
  for (let i = 0; i < 100 && u.runEvents(run_id).filter((e) => e.type === 'partial_result').length < 3; i++) await new Promise((r) => setTimeout(r, 20));
  await u.ack('stop_agent', { run_id });
  const events = await u.waitForRun(run_id);
  expect(terminal(events).payload.status).toBe('cancelled');
  const streamed = events.filter((e) => e.type === 'partial_result').map((e) => e.payload.text).join('');
  expect(streamed.length).toBeGreaterThan(0);
  const next = await u.start({ agent: 'echo', input: 'and then', thread_id });
  await u.waitForRun(next.run_id);
  const history = (await u.http('GET', `/v1/threads/${thread_id}/messages`)).body.messages.map((m: any) => [m.role, m.status, m.content]);
  expect(history).toEqual([
    ['user', 'complete', 'p'],
    ['assistant', 'interrupted', streamed],
    ['user', 'complete', 'and then'],
    ['assistant', 'complete', 'and then'],
  ]);
});

test('stop is idempotent, and a finished run stays finished', async () => {
  const { run_id } = await u.start({ agent: 'echo', input: 'done already' });
  await u.waitForRun(run_id);
  const ack = await u.ack('stop_agent', { run_id });
  expect(ack).toEqual({ run_id, status: 'completed' });
  const again = await u.http('POST', `/v1/runs/${run_id}/cancel`);
  expect(again.status).toBe(202);
  await new Promise((r) => setTimeout(r, 200));
  expect(u.runEvents(run_id).filter((e) => e.type === 'agent_completed')).toHaveLength(1);
});

test('another user cannot stop my run: NOT_FOUND, and my run completes', async () => {
  const mallory = await UserClient.connect(server.url, 'mallory');
  try {
    const { run_id } = await u.start({ agent: 'chaos', input: { mode: 'slow', text: 's', ms: 300 } });
    expect(await mallory.ack('stop_agent', { run_id })).toEqual({ error: { code: 'NOT_FOUND', message: 'no such run' } });
    expect((await mallory.http('POST', `/v1/runs/${run_id}/cancel`)).status).toBe(404);
    expect(terminal(await u.waitForRun(run_id)).payload.status).toBe('completed');
  } finally {
    mallory.close();
  }
});
