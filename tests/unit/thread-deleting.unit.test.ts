/**
 * While this node deletes a thread (RunWrites.isDeleting), the store answers as if it were gone: the thread, and
 * each of its runs, whose events are being removed first (a run read then would show a log missing its start).
 */
import type { Db } from '../../prisma/client-type';
import { createPrismaRunStore } from '../../server/store/prisma-run-store';
import type { RunWrites } from '../../server/store/run-writes';

const at = new Date('2026-12-07T10:00:00.000Z');
const thread = { id: 't1', userId: 'alice', title: null, createdAt: at, updatedAt: at };
const run = {
  ...{ id: 'r1', threadId: 't1', userId: 'alice', agentName: 'echo', input: '{"text":"hi"}', correlationId: null, requestId: 'q1', status: 'completed' },
  ...{ errorCode: null, errorMessage: null, result: '"hi"', queuedAt: at, startedAt: at, finishedAt: at, cellId: 'c1', workerId: 1, attempts: 1, report: null, replayOf: null },
  ...{ owner: null, cancelRequested: false },
};

function storeDeleting(deleting: [string, string] | null) {
  const db = { thread: { findFirst: async () => thread }, run: { findFirst: async () => run } } as unknown as Db;
  const writes = { isDeleting: (userId: string, threadId: string) => deleting !== null && deleting[0] === userId && deleting[1] === threadId } as unknown as RunWrites;
  return createPrismaRunStore(db, writes);
}

test('a thread being deleted, and its runs, read as gone; another thread or no delete reads as stored', async () => {
  const gone = storeDeleting(['alice', 't1']);
  expect(await gone.findThread('alice', 't1')).toBeNull();
  expect(await gone.findRun('alice', 'r1')).toBeNull();
  for (const store of [storeDeleting(null), storeDeleting(['alice', 't2'])]) {
    expect(await store.findThread('alice', 't1')).toEqual(thread);
    expect(await store.findRun('alice', 'r1')).toMatchObject({ id: 'r1', threadId: 't1', result: 'hi' });
  }
});
