/**
 * A correlation_id names one run however its duplicates are refused otherwise: sent through several nodes at once,
 * a duplicate must be answered with the run its twin was accepted as, never with the refusal its twin's own run
 * caused (THREAD_BUSY for multitask "reject" on the twin's conversation, OVERLOADED for the twin's place in the
 * user's queue). On one node the duplicates wait for each other (Accepting); across nodes each checks the store
 * before the other committed, then finds the other's run in its accept's checks under the user's lock.
 */
import { eventually, httpCall, UserClient } from '../helpers/client';
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
  const status = async (runId: string) => (await cluster.query('SELECT status FROM "Run" WHERE id = $1', [runId]))[0]?.status;
  // A long run holds the user's one running place, and one more waits: one place is left. The accept's check counts
  // a run as waiting until its start is written (claimed by a node or not), so 'wait' and the duplicates go once the
  // database says 'hold' runs: sent while it was still starting (the claim, the cell, the write), the first of them
  // found no place left (hold and wait waiting) and were OVERLOADED before their twin existed, which took the place
  // a moment later (1 run of 15 under two CPU burners).
  const hold = await sockets[0].start({ agent: 'streamer', input: { text: 'hold', parts: 40, delay: 250 } });
  expect(await eventually(async () => (await status(hold.run_id)) === 'running', 30_000, 10)).toBe(true);
  const wait = await sockets[0].start({ agent: 'streamer', input: { text: 'wait', parts: 1 } });
  // The user's lock (its QueueUser row, which every accept's check takes first) is held here until each node's accept
  // waits for it: every look-up has missed, one accept takes the place, and the two others are refused by their twin's
  // run (two waiting), the case this test is about. Left to timing, it came in about 1 of 3 runs.
  const payload = { agent: 'streamer', input: { text: 'last', parts: 1 }, correlation_id: 'cap-last' };
  const lock = await cluster.database.connect();
  let sent: Promise<{ run_id?: string; code?: string }[]>;
  try {
    await lock.query('BEGIN');
    expect((await lock.query('SELECT 1 FROM "QueueUser" WHERE "userId" = $1 FOR UPDATE', [user])).rowCount).toBe(1);
    sent = duplicates(sockets, payload, 2);
    // The accepts waiting for it: the first for this transaction, the others behind it for the row (pg_stat_activity's
    // text is no guide: an accept's statements are pipelined, so it shows the last one sent).
    const waiting = async () =>
      (
        await lock.query(
          `SELECT count(DISTINCT l.pid)::int AS n FROM pg_locks AS l WHERE NOT l.granted ` +
            `AND (pg_backend_pid() = ANY(pg_blocking_pids(l.pid)) OR (l.locktype = 'tuple' AND l.relation = '"QueueUser"'::regclass))`,
        )
      ).rows[0].n;
    expect(await eventually(async () => (await waiting()) === 3, 10_000, 10)).toBe(true);
  } finally {
    await lock.query('ROLLBACK').catch(() => undefined);
    await lock.end();
  }
  const answers = await sent;
  // One place was left throughout: hold still runs and wait still waits (neither goes back), so no answer is a
  // refusal of a full queue nor an accept after a second place was freed.
  expect([await status(hold.run_id), await status(wait.run_id)]).toEqual(['running', 'queued']);
  const rows = await cluster.query('SELECT id FROM "Run" WHERE "userId" = $1 AND "correlationId" = $2', [user, payload.correlation_id]);
  expect(rows).toHaveLength(1);
  expect(answers).toEqual(answers.map(() => ({ run_id: rows[0].id })));
  await sockets[0].ack('stop_agent', { run_id: hold.run_id });
});
