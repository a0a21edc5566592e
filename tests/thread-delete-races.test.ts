/**
 * DELETE /v1/threads/:id on SQLite marks the thread as being deleted (run-writes.ts `deleting`) inside a write of the
 * group commit. That write can be applied more than once (the batch rolled back for another write's fault, then
 * each write applied alone) or rolled back with its batch (the storage failing): the mark must follow what was
 * committed, or the thread reads as gone on this node until it restarts, the DELETE answers NOT_FOUND, and its
 * bytes stay on the user's count. The faulty or refused write can be another user's.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { RunEventEnvelope } from '../protocol/events';
import { migrationsFolder } from '../server/store/migrations';
import { applyMigrations } from '../server/store/sqlite/apply-migrations';
import { createRunWrites } from '../server/store/sqlite/run-writes';
import type { AcceptedRunRow } from '../server/store/run-writes';

const env = (runId: string, seq: number, type: string, payload: unknown, at: Date, u: string, th: string): RunEventEnvelope =>
  ({ type, event_id: `${runId}-${seq}`, seq, run_id: runId, thread_id: th, user_id: u, agent_name: 'x', timestamp: at.toISOString(), payload }) as RunEventEnvelope;
const accept = (id: string, u: string, threadId: string | null, newThreadId: string, at: Date, correlationId: string | null = null): AcceptedRunRow => ({
  id, userId: u, threadId, newThreadId, agentName: 'x', input: '{}', inputText: 'hello', correlationId, requestId: `${id}r`, replayOf: null,
  firstEvent: env(id, 1, 'message_received', { correlation_id: correlationId }, at, u, threadId ?? newThreadId), correlationSince: 0,
});
const finished = (id: string, u: string, th: string, at: Date) => ({
  runId: id, threadId: th, status: 'completed' as const, error: null, result: 'answer', terminal: env(id, 2, 'agent_completed', { status: 'completed' }, at, u, th), report: null, partialText: 'answer',
});

async function withWrites(busyTimeoutMs: number, body: (w: ReturnType<typeof createRunWrites>, file: string) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-delete-races-'));
  const file = path.join(dir, 'atoll.db');
  applyMigrations(file, migrationsFolder('sqlite'));
  const w = createRunWrites(file, { busyTimeoutMs, log: { warn: () => undefined, info: () => undefined } });
  try {
    await body(w, file);
  } finally {
    await w.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function aThread(w: ReturnType<typeof createRunWrites>, runs = 1): Promise<void> {
  for (let i = 0; i < runs; i++) {
    const at = new Date();
    await w.acceptRun(accept(`a-${i}`, 'alice', i ? 'alice-thread' : null, 'alice-thread', at));
    await w.appendEvents(Array.from({ length: 20 }, (_, k) => env(`a-${i}`, k + 2, 'agent_token', { text: 'y'.repeat(100) }, at, 'alice', 'alice-thread')));
    await w.finishRun({ ...finished(`a-${i}`, 'alice', 'alice-thread', at), terminal: env(`a-${i}`, 22, 'agent_completed', { status: 'completed' }, at, 'alice', 'alice-thread') });
  }
}

test("another user's accept refused in the same commit (its correlation id taken) does not make a DELETE answer NOT_FOUND and leave the thread marked", async () => {
  await withWrites(5000, async (w) => {
    await aThread(w);
    await w.acceptRun(accept('b-1', 'bob', null, 'bob-thread', new Date(), 'same'));
    // In one turn: bob's second accept with the same correlation id (a write's own fault: the batch is applied again
    // write by write) and alice's DELETE.
    const [alices, bobs] = await Promise.allSettled([w.deleteThread('alice', 'alice-thread'), w.acceptRun(accept('b-2', 'bob', null, 'bob-thread-2', new Date(), 'same'))]);
    expect(bobs).toMatchObject({ status: 'rejected', reason: { name: 'CorrelationTakenError' } });
    expect(alices).toEqual({ status: 'fulfilled', value: 'deleted' });
    expect(w.isDeleting('alice', 'alice-thread')).toBe(false);
    expect(await w.storedBytes('alice')).toBe(0);
  });
});

test('an accept continuing the thread in the same commit as its DELETE: the delete still happens, nothing stays marked', async () => {
  await withWrites(5000, async (w) => {
    await aThread(w);
    const [del, cont] = await Promise.allSettled([w.deleteThread('alice', 'alice-thread'), w.acceptRun(accept('a-late', 'alice', 'alice-thread', 'unused', new Date()))]);
    expect(cont).toMatchObject({ status: 'rejected', reason: { name: 'RowMissingError' } });
    expect(del).toEqual({ status: 'fulfilled', value: 'deleted' });
    expect(w.isDeleting('alice', 'alice-thread')).toBe(false);
    expect(await w.storedBytes('alice')).toBe(0);
  });
});

test("the storage refusing the DELETE's first commit (another user's write in it): DB_UNAVAILABLE, the thread not left marked, a retry deletes it", async () => {
  await withWrites(20, async (w, file) => {
    await aThread(w);
    const other = new Database(file);
    other.exec('BEGIN IMMEDIATE');
    try {
      const [alices, bobs] = await Promise.allSettled([w.deleteThread('alice', 'alice-thread'), w.acceptRun(accept('b-1', 'bob', null, 'bob-thread', new Date()))]);
      expect(bobs).toMatchObject({ status: 'rejected', reason: { code: 'DB_UNAVAILABLE' } });
      expect(alices).toMatchObject({ status: 'rejected', reason: { code: 'DB_UNAVAILABLE' } });
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    expect(w.isDeleting('alice', 'alice-thread')).toBe(false);
    await expect(w.deleteThread('alice', 'alice-thread')).resolves.toBe('deleted');
    expect(await w.storedBytes('alice')).toBe(0);
  });
});

test('the storage failing in the middle of a delete: the DELETE answers DB_UNAVAILABLE instead of waiting for the storage, the count stays exact, and a retry finishes it', async () => {
  await withWrites(20, async (w, file) => {
    await aThread(w, 150); // 150 runs of 22 events: several commits of 1,000 rows
    const start = await w.storedBytes('alice');
    let settled: PromiseSettledResult<unknown> | undefined;
    void w.deleteThread('alice', 'alice-thread').then(
      (value) => (settled = { status: 'fulfilled', value }),
      (reason: unknown) => (settled = { status: 'rejected', reason }),
    );
    while ((await w.storedBytes('alice')) === start) await new Promise((r) => setImmediate(r));
    const other = new Database(file);
    other.exec('BEGIN IMMEDIATE');
    try {
      const until = Date.now() + 2000;
      while (!settled && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      expect(settled).toMatchObject({ status: 'rejected', reason: { code: 'DB_UNAVAILABLE' } });
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    await new Promise((r) => setTimeout(r, 50));
    expect(w.isDeleting('alice', 'alice-thread')).toBe(false);
    const db = new Database(file, { readonly: true });
    const held = db.prepare(
      "SELECT (SELECT coalesce(sum(octet_length(payload)), 0) FROM RunEvent WHERE runId IN (SELECT id FROM Run WHERE threadId = 'alice-thread')) + (SELECT coalesce(sum(octet_length(content)), 0) FROM Message WHERE threadId = 'alice-thread') AS b",
    ).get() as { b: number };
    db.close();
    expect(await w.storedBytes('alice')).toBe(held.b);
    await expect(w.deleteThread('alice', 'alice-thread')).resolves.toBe('deleted');
    expect(await w.storedBytes('alice')).toBe(0);
  });
}, 60_000);
