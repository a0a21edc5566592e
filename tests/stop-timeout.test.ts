/**
 * stop_agent and the wall timeout: a stopped run ends as cancelled even when its agent ignores the signal or
 * blocks its worker; a deadline counts from the run's start, not from its wait (in the front's queue or for a
 * worker in its cell); a queued run is stopped before it starts; stops are owner-only.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
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
])('stop_agent ends a %s run (agent %s) as cancelled, long before its deadline', async (mode) => {
  const { run_id } = await u.start({ agent: 'chaos', input: { mode, text: mode, ms: 60_000 } });
  await u.waitForEvent(run_id, 'agent_thinking');
  const stoppedAt = Date.now();
  const ack = await u.ack('stop_agent', { run_id });
  expect(ack).toMatchObject({ run_id });
  const end = terminal(await u.waitForRun(run_id, 20_000));
  // What proves the stop is the status: left alone, each of these runs ends as `timeout` (2.5 s) or never.
  // The bound only says the stop took effect at all; CANCEL_GRACE_MS (0.5 s) is the idle-machine figure.
  expect(end.payload).toMatchObject({ status: 'cancelled', success: false, error: { code: 'CANCELLED' } });
  expect(Date.parse(end.timestamp) - stoppedAt).toBeLessThan(15_000);
  const run = await u.http('GET', `/v1/runs/${run_id}`);
  expect(run.body).toMatchObject({ status: 'cancelled', error: { code: 'CANCELLED' } });
});

test.each(['hang', 'hang_async'])('a %s run is ended at its deadline with TIMEOUT', async (mode) => {
  const { run_id } = await u.start({ agent: 'chaos', input: { mode, text: mode } });
  const started = await u.waitForEvent(run_id, 'agent_started');
  const end = terminal(await u.waitForRun(run_id, 20_000));
  expect(end.payload).toMatchObject({ status: 'timeout', error: { code: 'TIMEOUT' } });
  const took = Date.parse(end.timestamp) - Date.parse(started.timestamp);
  expect(took).toBeGreaterThanOrEqual(2500);
  // Ended by its deadline and not by anything much later; the idle-machine figure is 2.5 s + CANCEL_GRACE_MS.
  expect(took).toBeLessThan(2500 + 10_000);
});

test('the deadline of a run that waited for its turn counts from its start, not from its acceptance', async () => {
  // The second run of a conversation waits in the queue until the first (2 s) ends, then hangs.
  const blocker = await u.start({ agent: 'chaos', input: { mode: 'slow', text: 'b', ms: 2000 } });
  const waiter = await u.start({ agent: 'chaos', input: { mode: 'hang', text: 'w' }, thread_id: blocker.thread_id });
  const events = await u.waitForRun(waiter.run_id, 30_000);
  const at = (type: string) => Date.parse(events.find((e) => e.type === type)!.timestamp);
  expect(terminal(events).payload).toMatchObject({ status: 'timeout', error: { code: 'TIMEOUT' } });
  const blockerEnd = Date.parse(terminal(await u.waitForRun(blocker.run_id)).timestamp);
  // It really waited: it started only after the blocker ended, the blocker's 2 s after the blocker's start, less
  // however late the test's second request came (143 ms on a starved CI: a fixed 1.9 s failed there).
  expect(at('agent_started')).toBeGreaterThanOrEqual(blockerEnd);
  const waited = at('agent_started') - at('message_received');
  expect(waited).toBeGreaterThanOrEqual(1000);
  // Its whole budget (2.5 s) counted from its start: a deadline counted from acceptance would have left it
  // 2.5 s less what it waited after its start.
  expect(at('agent_completed') - at('agent_started')).toBeGreaterThanOrEqual(2500);
  expect(at('agent_completed') - at('message_received')).toBeGreaterThanOrEqual(2500 + waited);
  expect(at('agent_completed') - at('agent_started')).toBeLessThan(2500 + 10_000);
}, 45_000);

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

describe('a run that waits inside its cell for a thread to start', () => {
  // Every worker of this server takes 2 s to warm up (an agent module that sleeps at load). With one
  // worker per cell and THREAD_REUSE=same_user, a second user's run is dispatched to the cell at once and
  // waits there while Piscina starts a worker for it: the wait is between dispatch and start.
  const BOOT_MS = 2000;
  let slow: TestServer;
  let a: UserClient;
  let b: UserClient;

  beforeAll(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-slow-boot-'));
    fs.writeFileSync(
      path.join(dir, 'slow-boot.mjs'),
      `await new Promise((resolve) => setTimeout(resolve, ${BOOT_MS}));\nexport default class SlowBoot { static agentName = 'slow-boot'; async execute() { return 'warm'; } }\n`,
    );
    slow = await startServer({ AGENTS_DIR: dir, ENABLE_CHAOS_AGENTS: '1', CELLS: '1', THREADS_PER_CELL: '1', WARM_SPARE_THREADS: '0', THREAD_REUSE: 'same_user', RUN_TIMEOUT_MS: '2500' });
    [a, b] = await Promise.all([UserClient.connect(slow.url, 'first-user'), UserClient.connect(slow.url, 'second-user')]);
  }, 60_000);
  afterAll(async () => {
    a?.close();
    b?.close();
    await slow?.stop();
  });

  test('its deadline counts from its thread\'s start, not from its dispatch', async () => {
    // The cell's only worker now serves the first user.
    expect(terminal(await a.waitForRun((await a.start({ agent: 'echo', input: 'mine' })).run_id)).payload.status).toBe('completed');
    const { run_id } = await b.start({ agent: 'chaos', input: { mode: 'hang', text: 'h' } });
    const events = await b.waitForRun(run_id, 40_000);
    const at = (type: string) => Date.parse(events.find((e) => e.type === type)!.timestamp);
    expect(terminal(events).payload).toMatchObject({ status: 'timeout', error: { code: 'TIMEOUT' } });
    // It waited for a new worker (the front had a free slot and dispatched it at once).
    expect(at('agent_started') - at('message_received')).toBeGreaterThanOrEqual(BOOT_MS - 100);
    // Its whole budget counted from its start; from dispatch it would have had about 0.5 s after its start.
    expect(at('agent_completed') - at('agent_started')).toBeGreaterThanOrEqual(2500);
    expect(at('agent_completed') - at('agent_started')).toBeLessThan(2500 + 10_000);
  }, 60_000);
});
