/**
 * A user put in quarantine for killing a cell on one node is in quarantine on every node: the node that named it
 * tells the others, so its next kill, wherever its run is claimed, takes no other user's run with it.
 */
import { UserClient, terminal } from '../helpers/client';
import { startTestCluster, type TestCluster } from '../helpers/cluster';

jest.setTimeout(240_000);

let cluster: TestCluster;
const open: UserClient[] = [];

beforeAll(async () => {
  // One serving cell per node (whatever runs beside the killer shares its cell) and one quarantine cell for
  // suspects: the cell killers' own is quarantine2.
  cluster = await startTestCluster({ nodes: 2, env: { ENABLE_CHAOS_AGENTS: '1', CELLS: '1', THREADS_PER_CELL: '2', QUARANTINE_CELLS: '1' } });
}, 300_000);

afterAll(async () => {
  open.forEach((c) => c.close());
  await cluster?.destroy();
});

async function connect(userId: string, slot: number): Promise<UserClient> {
  const c = await UserClient.connect(cluster.url(slot), userId);
  open.push(c);
  return c;
}

test('the node that named a cell killer tells the other: there its next kill runs alone too', async () => {
  const killer = await connect('killer', 1);
  const first = await killer.start({ agent: 'chaos', input: { mode: 'abort', text: 'boom' } });
  expect(terminal(await killer.waitForRun(first.run_id, 60_000)).payload.error.code).toBe('WORKER_CRASHED');
  // Whichever node claimed it named it; the other heard.
  const namedOn = cluster.slots.find((slot) => cluster.node(slot).logs.some((l) => l.evidence === 'culprit' && l.user_id === 'killer'))!;
  expect(namedOn).toBeDefined();
  const other = cluster.slots.find((slot) => slot !== namedOn)!;
  expect(await cluster.node(other).waitForLog((l) => /another node put a user in quarantine/.test(String(l.msg)) && l.user_id === 'killer', 30_000, true)).not.toBeNull();

  // Only the other node is left to claim runs.
  await cluster.term(namedOn);
  const there = await connect('killer', other);
  const bystander = await connect('bystander', other);
  const unsafe = await bystander.start({ agent: 'unrepeatable', input: { text: 'x', ms: 120_000 } });
  await bystander.waitForEvent(unsafe.run_id, 'agent_started', 60_000);
  const second = await there.start({ agent: 'chaos', input: { mode: 'abort', text: 'boom' } });
  const secondEvents = await there.waitForRun(second.run_id, 60_000);
  expect(terminal(secondEvents).payload.error.code).toBe('WORKER_CRASHED');
  expect(secondEvents.some((e) => e.type === 'run_restarted')).toBe(false);
  expect((await there.http('GET', `/v1/runs/${second.run_id}`)).body.ran_on.cell).toMatch(/^quarantine2-g\d+$/);
  // The bystander's run, unsafe to repeat, was never in the dead cell: still running.
  expect((await bystander.http('GET', `/v1/runs/${unsafe.run_id}`)).body.status).toBe('running');
  await bystander.ack('stop_agent', { run_id: unsafe.run_id });
  expect(terminal(await bystander.waitForRun(unsafe.run_id, 60_000)).payload.status).toBe('cancelled');
});
