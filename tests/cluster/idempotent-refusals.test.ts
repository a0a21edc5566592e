/**
 * A correlation_id names one run however its duplicates are refused otherwise: sent through several nodes at once,
 * a duplicate must be answered with the run its twin was accepted as, never with the refusal its twin's own run
 * caused (THREAD_BUSY for multitask "reject" on the twin's conversation, OVERLOADED for the twin's place in the
 * user's queue). On one node the duplicates wait for each other (Accepting); across nodes each checks the store
 * before the other committed, then finds the other's run in its accept's checks under the user's lock.
 */
import { httpCall, UserClient } from '../helpers/client';
import { startTestCluster, type TestCluster } from '../helpers/cluster';

jest.setTimeout(120_000);

let cluster: TestCluster;
const open: UserClient[] = [];

beforeAll(async () => {
  // One run of a user at a time, and two waiting at most: the second duplicate of a run is at the cap.
  cluster = await startTestCluster({ nodes: 3, env: { USER_MAX_CONCURRENT_RUNS: '1', USER_MAX_QUEUED_RUNS: '2' } });
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

/** `per` copies of one start request through each node's socket at once; each answer as {run_id} or {code}. */
async function duplicates(sockets: UserClient[], payload: Record<string, unknown>, per: number): Promise<{ run_id?: string; code?: string }[]> {
  const sends = sockets.flatMap((s) => Array.from({ length: per }, () => s.ack('start_agent', payload).then((a: { run_id?: string; error?: { code: string } }) => (a.error ? { code: a.error.code } : { run_id: a.run_id }))));
  return Promise.all(sends);
}

test('multitask "reject": duplicates through three nodes at once all name the one run, none is THREAD_BUSY', async () => {
  const user = 'idem-reject';
  const sockets = await Promise.all([1, 2, 3].map((slot) => connect(user, slot)));
  for (let round = 0; round < 5; round++) {
    const thread = (await httpCall(cluster.url(1), 'POST', '/v1/threads', {}, cluster.token(user))).body.id;
    const payload = { agent: 'streamer', input: { text: 'x', parts: 2, delay: 5 }, thread_id: thread, multitask: 'reject', correlation_id: `reject-${round}` };
    const answers = await duplicates(sockets, payload, 2);
    const rows = await cluster.query('SELECT id FROM "Run" WHERE "userId" = $1 AND "correlationId" = $2', [user, payload.correlation_id]);
    expect(rows).toHaveLength(1);
    expect({ round, answers }).toEqual({ round, answers: answers.map(() => ({ run_id: rows[0].id })) });
    await sockets[0].waitForRun(rows[0].id, 60_000);
  }
});

test('USER_MAX_QUEUED_RUNS: duplicates of the run that took the last place all name it, none is OVERLOADED', async () => {
  const user = 'idem-cap';
  const sockets = await Promise.all([1, 2, 3].map((slot) => connect(user, slot)));
  // A long run holds the user's one running place, and one more waits: one place is left.
  const hold = await sockets[0].start({ agent: 'streamer', input: { text: 'hold', parts: 40, delay: 250 } });
  await sockets[0].start({ agent: 'streamer', input: { text: 'wait', parts: 1 } });
  const payload = { agent: 'streamer', input: { text: 'last', parts: 1 }, correlation_id: 'cap-last' };
  const answers = await duplicates(sockets, payload, 2);
  const rows = await cluster.query('SELECT id FROM "Run" WHERE "userId" = $1 AND "correlationId" = $2', [user, payload.correlation_id]);
  expect(rows).toHaveLength(1);
  expect(answers).toEqual(answers.map(() => ({ run_id: rows[0].id })));
  await sockets[0].ack('stop_agent', { run_id: hold.run_id });
});
