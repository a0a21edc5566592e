/**
 * DELETE /v1/threads/:id on SQLite runs in the front's group commit, on the front's event loop (better-sqlite3 is
 * synchronous), and removing a row reads its text's overflow pages. Done in one commit, a thread a user may
 * legitimately hold (up to USER_MAX_STORED_BYTES, 1 GiB by default) froze every user's sockets and requests for as
 * long: 0.28 s for 256 MiB, 0.64 s for 400 MiB, 1.3 s for 1 GiB (helper-106). It now goes in commits of a bounded
 * size: another user's write asked for while it is under way commits before it ends, and an accept continuing the
 * thread fails as if the thread were gone. The longest hold of the event loop is printed, not asserted.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { RunEventEnvelope } from '../protocol/events';
import { migrationsFolder } from '../server/store/migrations';
import { applyMigrations } from '../server/store/sqlite/apply-migrations';
import { createRunWrites } from '../server/store/sqlite/run-writes';
import type { AcceptedRunRow, FinishedRunRow } from '../server/store/run-writes';

const env = (runId: string, seq: number, type: string, payload: unknown, at: Date, u: string, th: string): RunEventEnvelope =>
  ({ type, event_id: `${runId}-${seq}`, seq, run_id: runId, thread_id: th, user_id: u, agent_name: 'x', timestamp: at.toISOString(), payload }) as RunEventEnvelope;
const accept = (id: string, u: string, threadId: string | null, newThreadId: string, at: Date): AcceptedRunRow => ({
  id, userId: u, threadId, newThreadId, agentName: 'x', input: '{}', inputText: 'hello', correlationId: null, requestId: `${id}r`, replayOf: null,
  firstEvent: env(id, 1, 'message_received', { correlation_id: null }, at, u, threadId ?? newThreadId), correlationSince: 0,
});
const finish = (id: string, u: string, th: string, at: Date, seq: number): FinishedRunRow => ({
  runId: id, threadId: th, status: 'completed', error: null, result: 'answer', terminal: env(id, seq, 'agent_completed', { status: 'completed' }, at, u, th), report: null, partialText: 'answer',
});

test('deleting a 64 MiB thread on SQLite goes in commits of its own: another user\'s write commits while it is under way, an accept continuing the thread is refused, and the count ends at 0', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-delete-stall-'));
  const file = path.join(dir, 'atoll.db');
  applyMigrations(file, migrationsFolder('sqlite'));
  const w = createRunWrites(file, { busyTimeoutMs: 5000, log: { warn: () => undefined, info: () => undefined } });
  try {
    const text = 'x'.repeat(256 * 1024);
    for (let i = 0; i < 64; i++) {
      const id = `run-${i}`;
      const at = new Date();
      await w.acceptRun(accept(id, 'user', i ? 'thread' : null, 'thread', at));
      await w.appendEvents(Array.from({ length: 4 }, (_, k) => env(id, k + 2, 'agent_token', { text }, at, 'user', 'thread')));
      await w.finishRun(finish(id, 'user', 'thread', at, 6));
    }
    const start = await w.storedBytes('user');
    expect(start).toBeGreaterThan(64 * 1024 * 1024);
    let longest = 0;
    let last = Date.now();
    const tick = setInterval(() => {
      const now = Date.now();
      longest = Math.max(longest, now - last - 5);
      last = now;
    }, 5);
    let deleted = false;
    const deletion = w.deleteThread('user', 'thread').then((outcome) => ((deleted = true), outcome));
    // Once a first part of the thread is gone (its bytes off the count)...
    while ((await w.storedBytes('user')) === start) await new Promise((r) => setImmediate(r));
    expect(w.isDeleting('user', 'thread')).toBe(true);
    const at = new Date();
    const [theirs, continued] = await Promise.allSettled([
      w.acceptRun(accept('other-run', 'other', null, 'other-thread', at)).then(async () => ({ deleted, left: await w.storedBytes('user') })),
      w.acceptRun(accept('late-run', 'user', 'thread', 'unused', at)),
    ]);
    // ...another user's accept is committed while most of it is still there: one commit held the rest back before.
    expect(theirs).toEqual({ status: 'fulfilled', value: { deleted: false, left: expect.any(Number) } });
    expect((theirs as PromiseFulfilledResult<{ left: number }>).value.left).toBeGreaterThan(start / 2);
    expect(continued).toMatchObject({ status: 'rejected', reason: { name: 'RowMissingError' } });
    await expect(deletion).resolves.toBe('deleted');
    await new Promise((r) => setTimeout(r, 30));
    clearInterval(tick);
    expect(await w.storedBytes('user')).toBe(0);
    expect(w.isDeleting('user', 'thread')).toBe(false);
    process.stdout.write(`deleting a 64 MiB thread: the event loop was held at most ${longest} ms at a time\n`);
  } finally {
    await w.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 120_000);
