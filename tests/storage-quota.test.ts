/**
 * USER_MAX_STORED_BYTES and DELETE /v1/threads/:id, on a real server and its real database (SQLite, or PostgreSQL
 * with ATOLL_TEST_DATABASE=postgresql): a user storing its cap gets no new run (socket and HTTP), another user is
 * not touched; the count is, byte for byte, what the user's rows hold; deleting a thread takes its rows and their
 * bytes away, and the user is accepted again. A thread with a run queued or running is not deleted.
 */
import { startServer, type TestServer } from './helpers/server';
import { UserClient, httpCall, metricValue, terminal } from './helpers/client';
import { queryTestDatabase, storedAndHeld } from './helpers/test-database';

const LIMIT = 100_000;

let server: TestServer;
beforeAll(async () => {
  server = await startServer({ USER_MAX_STORED_BYTES: String(LIMIT), ENABLE_CHAOS_AGENTS: '1', CELLS: '1' });
});
afterAll(() => server.stop());

/** What the user's rows hold: its events' payloads and its threads' messages, in bytes. */
const heldInRows = async (userId: string): Promise<number> => (await storedAndHeld(server.dir, userId)).held;
/** What the server counted for the user. */
const counted = async (userId: string): Promise<number> => (await storedAndHeld(server.dir, userId)).counted;

test('a user storing USER_MAX_STORED_BYTES gets STORAGE_QUOTA_EXCEEDED on the socket and over HTTP, nothing accepted; another user runs; the count is what its rows hold; deleting its threads frees it', async () => {
  const alice = await UserClient.connect(server.url, 'quota-alice');
  const bob = await UserClient.connect(server.url, 'quota-bob');
  try {
    // 'é' is 2 bytes: 24,000 bytes of text in 12,000 characters, stored as the user's message, the answer and in events.
    const text = 'é'.repeat(12_000);
    const threads: string[] = [];
    let refused: { error?: { code: string; message: string } } | null = null;
    for (let i = 0; i < 10 && !refused; i++) {
      const ack = await alice.ack('start_agent', { agent: 'echo', input: text });
      if (ack.error) refused = ack;
      else {
        threads.push(ack.thread_id);
        expect(terminal(await alice.waitForRun(ack.run_id, 60_000)).payload.status).toBe('completed');
        expect(await counted('quota-alice')).toBe(await heldInRows('quota-alice'));
      }
    }
    expect(refused?.error).toMatchObject({ code: 'STORAGE_QUOTA_EXCEEDED', message: expect.stringMatching(/USER_MAX_STORED_BYTES/) });
    expect(threads.length).toBeGreaterThanOrEqual(1);
    const held = await heldInRows('quota-alice');
    expect(held).toBeGreaterThanOrEqual(LIMIT);
    // Counted in bytes, not characters: the characters alone would still be under the cap.
    expect(held).toBeGreaterThan(threads.length * 3 * text.length);
    expect(await counted('quota-alice')).toBe(held);
    expect((await alice.http('GET', '/v1/usage')).body).toEqual({ stored_bytes: held, max_stored_bytes: LIMIT });

    // Over HTTP too, on a thread of hers; nothing was accepted (no run, no message).
    const runsBefore = await queryTestDatabase<{ n: number }>(server.dir, 'SELECT COUNT(*) AS "n" FROM "Run" WHERE "userId" = ?', ['quota-alice']);
    const http = await alice.http('POST', `/v1/threads/${threads[0]}/runs`, { agent: 'echo', input: 'one more' });
    expect(http.status).toBe(507);
    expect(http.body.error.code).toBe('STORAGE_QUOTA_EXCEEDED');
    expect(await queryTestDatabase(server.dir, 'SELECT COUNT(*) AS "n" FROM "Run" WHERE "userId" = ?', ['quota-alice'])).toEqual(runsBefore);
    expect(await counted('quota-alice')).toBe(held);
    // Both refusals counted for the operator.
    const metrics = (await httpCall(server.url, 'GET', '/metrics')).body as string;
    expect(metricValue(metrics, 'atoll_runs_refused_total', { code: 'STORAGE_QUOTA_EXCEEDED' })).toBe(2);

    // Per user: bob is not refused.
    const theirs = await bob.start({ agent: 'echo', input: 'mine' });
    expect(terminal(await bob.waitForRun(theirs.run_id, 60_000)).payload.final_response).toBe('mine');

    // Alice cannot delete bob's thread (it looks unknown), nor one that does not exist.
    expect((await alice.http('DELETE', `/v1/threads/${theirs.thread_id}`)).body.error.code).toBe('NOT_FOUND');
    expect((await alice.http('DELETE', '/v1/threads/00000000-0000-4000-8000-000000000000')).status).toBe(404);
    expect((await bob.http('GET', `/v1/threads/${theirs.thread_id}/messages`)).body.messages).toHaveLength(2);

    // Deleting her first thread takes exactly its rows' bytes off her count, and its rows.
    const firstRun = (await alice.http('GET', `/v1/threads/${threads[0]}/messages`)).body.messages[0].run_id as string;
    const deleted = await alice.http('DELETE', `/v1/threads/${threads[0]}`);
    expect(deleted.status).toBe(204);
    expect(await counted('quota-alice')).toBe(await heldInRows('quota-alice'));
    expect(await counted('quota-alice')).toBeLessThan(held);
    expect((await alice.http('GET', `/v1/threads/${threads[0]}/messages`)).status).toBe(404);
    expect((await alice.http('GET', `/v1/runs/${firstRun}`)).status).toBe(404);
    expect(await queryTestDatabase(server.dir, 'SELECT COUNT(*) AS "n" FROM "RunEvent" WHERE "runId" = ?', [firstRun])).toEqual([{ n: 0 }]);
    expect((await alice.http('DELETE', `/v1/threads/${threads[0]}`)).status).toBe(404);

    // All of them: nothing left, nothing counted, and she is accepted again.
    for (const id of threads.slice(1)) expect((await alice.http('DELETE', `/v1/threads/${id}`)).status).toBe(204);
    expect(await heldInRows('quota-alice')).toBe(0);
    expect(await counted('quota-alice')).toBe(0);
    expect((await alice.http('GET', '/v1/usage')).body).toEqual({ stored_bytes: 0, max_stored_bytes: LIMIT });
    const again = await alice.start({ agent: 'echo', input: 'back' });
    expect(terminal(await alice.waitForRun(again.run_id, 60_000)).payload.final_response).toBe('back');
    expect(await counted('quota-alice')).toBe(await heldInRows('quota-alice'));
    // Bob's count never moved with hers.
    expect(await counted('quota-bob')).toBe(await heldInRows('quota-bob'));
  } finally {
    alice.close();
    bob.close();
  }
}, 180_000);

test('a thread with a run in progress is not deleted (THREAD_BUSY); once the run has ended it is', async () => {
  const carol = await UserClient.connect(server.url, 'quota-carol');
  try {
    const run = await carol.start({ agent: 'chaos', input: { mode: 'slow', text: 'wait', ms: 120_000 } });
    await carol.waitForEvent(run.run_id, 'agent_started', 30_000);
    const busy = await carol.http('DELETE', `/v1/threads/${run.thread_id}`);
    expect(busy.status).toBe(409);
    expect(busy.body.error).toMatchObject({ code: 'THREAD_BUSY', message: expect.stringMatching(/cancel/) });
    expect((await carol.http('GET', `/v1/runs/${run.run_id}`)).body.status).toBe('running');
    expect(await carol.ack('stop_agent', { run_id: run.run_id })).toMatchObject({ run_id: run.run_id });
    expect(terminal(await carol.waitForRun(run.run_id, 60_000)).payload.status).toBe('cancelled');
    // The run's end is committed before its terminal event is sent: the thread is free now.
    expect((await carol.http('DELETE', `/v1/threads/${run.thread_id}`)).status).toBe(204);
    expect(await counted('quota-carol')).toBe(0);
    expect(await heldInRows('quota-carol')).toBe(0);
  } finally {
    carol.close();
  }
}, 120_000);
