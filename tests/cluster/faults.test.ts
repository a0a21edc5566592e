/**
 * A node's death and a node's drain, with three real nodes: the runs a SIGKILLed node held run again on another
 * node exactly once (`run_restarted`), or fail with WORKER_CRASHED when their agent is not safe to repeat; a
 * SIGTERMed node lets its run finish (or, past SHUTDOWN_GRACE_MS, move to another node), tells its sockets to go
 * elsewhere (`server_shutdown`) and exits cleanly.
 * Which node holds a run is read from its row (its owner's lease), so each test kills the right one.
 * Takeover times are printed, never asserted (tests wait for states, not for times).
 */
import { httpCall, UserClient } from '../helpers/client';
import { replayOnResync, startTestCluster, type TestCluster } from '../helpers/cluster';
import { persistedEvents } from '../helpers/run-checks';

jest.setTimeout(180_000);

const LEASE_MS = 2000;
let cluster: TestCluster;
const open: UserClient[] = [];

beforeAll(async () => {
  cluster = await startTestCluster({ nodes: 3, leaseMs: LEASE_MS });
}, 300_000);

// Each test kills or stops a node: the next one starts with all three again (same NODE_ID, same port).
afterEach(async () => {
  open.splice(0).forEach((c) => c.close());
  for (const slot of cluster.slots) if (cluster.node(slot).state === 'exited') await cluster.start(slot);
}, 120_000);

afterAll(async () => {
  open.forEach((c) => c.close());
  await cluster?.destroy();
});

/** A socket of `userId` on every node that is up. */
async function everywhere(userId: string): Promise<UserClient[]> {
  const sockets = await Promise.all(cluster.slots.filter((s) => cluster.node(s).state === 'up').map(async (s) => replayOnResync(await UserClient.connect(cluster.url(s), userId))));
  open.push(...sockets);
  return sockets;
}

/** Waits until a node holds the run (it was claimed and started), and returns that node's slot. */
async function holder(runId: string): Promise<number> {
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
    const nodeId = await cluster.holderOf(runId);
    if (nodeId) return cluster.slotOf(nodeId);
  }
  throw new Error(`no node holds run ${runId}`);
}

const survivors = (sockets: UserClient[], slot: number) => sockets.filter((s) => s.url !== cluster.url(slot));

test("a SIGKILLed node's running run runs again on another node, exactly once, and completes", async () => {
  const sockets = await everywhere('tk1');
  const { run_id } = await sockets[0].start({ agent: 'gated', input: { text: 'tk', gate: 'tk1-open', parts: 3 } });
  await sockets[0].waitForEvent(run_id, 'agent_started', 60_000);
  const slot = await holder(run_id);
  const killedAt = Date.now();
  await cluster.kill(slot);
  const watcher = survivors(sockets, slot)[0];
  await watcher.waitForEvent(run_id, 'run_restarted', 60_000);
  console.log(`takeover: run_restarted ${Date.now() - killedAt} ms after SIGKILL (NODE_LEASE_MS=${LEASE_MS})`);
  expect((await httpCall(watcher.url, 'POST', '/v1/threads', { title: 'tk1-open' }, watcher.token)).status).toBe(201);
  await watcher.waitForRun(run_id, 60_000);

  const log = await persistedEvents(watcher, run_id);
  expect(log.filter((e) => e.type === 'run_restarted').map((e) => e.payload)).toEqual([{ attempt: 2, reason: 'node_lost' }]);
  expect(log.filter((e) => e.type === 'agent_started')).toHaveLength(2);
  expect(log[log.length - 1]).toMatchObject({ type: 'agent_completed', payload: { status: 'completed' } });
  expect(log.map((e) => e.seq)).toEqual(log.map((_, i) => i + 1));
  for (const s of survivors(sockets, slot)) expect((await s.waitForRun(run_id, 60_000)).map((e) => e.event_id)).toEqual(log.map((e) => e.event_id));
  const row = (await cluster.query('SELECT status, attempts FROM "Run" WHERE id = $1', [run_id]))[0];
  expect(row).toEqual({ status: 'completed', attempts: 2 });
});

test('a SIGKILLed node\'s run of an agent that is not safe to repeat fails with WORKER_CRASHED and never runs again', async () => {
  const sockets = await everywhere('tk2');
  const { run_id } = await sockets[0].start({ agent: 'unrepeatable', input: { text: 'once', ms: 600_000 } });
  await sockets[0].waitForEvent(run_id, 'agent_started', 60_000);
  const slot = await holder(run_id);
  await cluster.kill(slot);
  const watcher = survivors(sockets, slot)[0];
  const events = await watcher.waitForRun(run_id, 60_000);
  expect(events[events.length - 1].payload).toMatchObject({ status: 'failed', error: { code: 'WORKER_CRASHED' } });
  const log = await persistedEvents(watcher, run_id);
  expect(log.map((e) => e.type)).toEqual(['message_received', 'agent_started', 'agent_completed']);
});

test('SIGTERM drains a node: its sockets are told to go elsewhere, its running run finishes, it exits 0', async () => {
  const first = await everywhere('dr1');
  const { run_id } = await first[0].start({ agent: 'gated', input: { text: 'dr', gate: 'dr1-open', parts: 2 } });
  await first[0].waitForEvent(run_id, 'agent_started', 60_000);
  const slot = await holder(run_id);
  const onIt = first.find((s) => s.url === cluster.url(slot))!;
  const told = new Promise<unknown>((resolve) => onIt.socket.once('server_shutdown', resolve));
  const draining = cluster.node(slot).waitForLog((l) => l.msg === 'shutting down', 60_000);
  const exited = cluster.term(slot);
  expect(await draining).not.toBeNull();
  // Draining: its run is still its own, and finishes within SHUTDOWN_GRACE_MS once it may.
  const other = survivors(first, slot)[0];
  expect((await httpCall(other.url, 'POST', '/v1/threads', { title: 'dr1-open' }, other.token)).status).toBe(201);
  const events = await other.waitForRun(run_id, 60_000);
  expect(events[events.length - 1].payload.status).toBe('completed');
  expect(await told).toMatchObject({ reason: expect.any(String) });
  expect(await exited).toEqual({ code: 0, signal: null });
  // New work goes to the nodes left.
  const next = await other.start({ agent: 'streamer', input: { text: 'after', parts: 2 } });
  expect((await other.waitForRun(next.run_id, 60_000)).pop()!.payload.status).toBe('completed');
});

test("SIGTERM drains a node: a run still running after SHUTDOWN_GRACE_MS moves to another node and completes there", async () => {
  const sockets = await everywhere('dr2');
  const { run_id } = await sockets[0].start({ agent: 'gated', input: { text: 'dr2', gate: 'dr2-open', parts: 2 } });
  await sockets[0].waitForEvent(run_id, 'agent_started', 60_000);
  const slot = await holder(run_id);
  const exited = cluster.term(slot);
  const watcher = survivors(sockets, slot)[0];
  // Its gate stays shut through the grace period: the run cannot finish there, so it moves.
  const moved = await watcher.waitForEvent(run_id, 'run_restarted', 60_000);
  expect(moved.payload).toEqual({ attempt: 2, reason: 'node_draining' });
  expect(await exited).toEqual({ code: 0, signal: null });
  expect((await httpCall(watcher.url, 'POST', '/v1/threads', { title: 'dr2-open' }, watcher.token)).status).toBe(201);
  const events = await watcher.waitForRun(run_id, 60_000);
  expect(events[events.length - 1].payload.status).toBe('completed');
  const log = await persistedEvents(watcher, run_id);
  expect(log.filter((e) => e.type === 'run_restarted')).toHaveLength(1);
  expect(log.filter((e) => e.type === 'agent_completed')).toHaveLength(1);
});

