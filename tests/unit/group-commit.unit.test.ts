/**
 * Group commit on an in-memory SQLite database: one transaction per turn of the event loop, a batch cut at
 * 2000 writes, a faulty write failing alone, any other failure failing the batch, and flushNow.
 */
import Database from 'better-sqlite3';
import { createGroupCommit } from '../../server/store/sqlite/group-commit';

class WriteError extends Error {}

function rig() {
  const db = new Database(':memory:');
  db.exec('CREATE TABLE t (v INTEGER NOT NULL UNIQUE)');
  const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
  const count = () => (db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n;
  const gc = createGroupCommit(db, (err) => err instanceof WriteError || (err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE');
  const add = (v: number) => gc.run(() => insert.run(v).changes);
  return { db, gc, add, count };
}

const turn = () => new Promise((r) => setImmediate(r));

test('writes asked for in one turn commit together at the next setImmediate, each resolving with its value', async () => {
  const { gc, add, count } = rig();
  const all = Promise.all([add(1), add(2), gc.run(() => 'x')]);
  expect(count()).toBe(0); // nothing applied synchronously
  await expect(all).resolves.toEqual([1, 1, 'x']);
  expect(count()).toBe(2);
  expect(gc.stats).toEqual({ writes: 3, commits: 1, retriedAlone: 0 });
  await add(3);
  expect(gc.stats).toEqual({ writes: 4, commits: 2, retriedAlone: 0 });
  // Nothing queued: no empty commit follows.
  await turn();
  await turn();
  expect(gc.stats).toEqual({ writes: 4, commits: 2, retriedAlone: 0 });
});

test('a write that fails on its own account fails alone: its neighbours commit', async () => {
  const { gc, add, count } = rig();
  await add(1);
  const results = await Promise.allSettled([add(2), add(1), add(3)]);
  expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
  expect((results[1] as PromiseRejectedResult).reason.code).toBe('SQLITE_CONSTRAINT_UNIQUE');
  expect((results[0] as PromiseFulfilledResult<number>).value).toBe(1);
  expect(count()).toBe(3);
  // 1 commit before, then each of the 3 alone (2 of them committed).
  expect(gc.stats).toEqual({ writes: 3, commits: 3, retriedAlone: 3 });
});

test('a failed write alone is rolled back whole, not half applied', async () => {
  const { db, gc, count } = rig();
  const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
  const results = await Promise.allSettled([
    gc.run(() => {
      insert.run(10);
      throw new WriteError('half way');
    }),
    gc.run(() => insert.run(11).changes),
  ]);
  expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled']);
  expect(count()).toBe(1);
});

test('any other failure fails the whole batch at once, and nothing of it is applied', async () => {
  const { gc, add, count } = rig();
  let tried = 0;
  const results = await Promise.allSettled([
    add(1),
    gc.run(() => {
      tried++;
      throw new Error('database is locked');
    }),
    add(2),
  ]);
  expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
  for (const r of results) expect((r as PromiseRejectedResult).reason.message).toBe('database is locked');
  expect(tried).toBe(1); // not retried alone
  expect(count()).toBe(0);
  expect(gc.stats).toEqual({ writes: 0, commits: 0, retriedAlone: 0 });
  // The next turn works again.
  await add(3);
  expect(count()).toBe(1);
});

test('a batch is cut at 2000 writes; the rest commits a turn later', async () => {
  const { gc, add, count } = rig();
  const writes = Array.from({ length: 2001 }, (_, i) => add(i));
  await turn();
  expect(count()).toBe(2000);
  expect(gc.stats.commits).toBe(1);
  await turn();
  expect(count()).toBe(2001);
  await Promise.all(writes);
  expect(gc.stats).toEqual({ writes: 2001, commits: 2, retriedAlone: 0 });
});

test('exactly 2000 writes make one commit', async () => {
  const { gc, add } = rig();
  await Promise.all(Array.from({ length: 2000 }, (_, i) => add(i)));
  expect(gc.stats).toEqual({ writes: 2000, commits: 1, retriedAlone: 0 });
});

test('flushNow commits everything queued at once, in batches of 2000, and cancels the scheduled commit', async () => {
  const { gc, add, count } = rig();
  const writes = Array.from({ length: 4001 }, (_, i) => add(i));
  gc.flushNow();
  expect(count()).toBe(4001);
  expect(gc.stats).toEqual({ writes: 4001, commits: 3, retriedAlone: 0 });
  await Promise.all(writes);
  await turn();
  expect(gc.stats.commits).toBe(3);
  // A write asked for after flushNow is scheduled again.
  await add(5000);
  expect(gc.stats.commits).toBe(4);
});

test('flushNow with nothing queued does nothing', () => {
  const { gc } = rig();
  gc.flushNow();
  expect(gc.stats).toEqual({ writes: 0, commits: 0, retriedAlone: 0 });
});

test('writes asked for while a commit resolves go into the next commit', async () => {
  const { gc, add } = rig();
  let second: Promise<number> | null = null;
  await add(1).then(() => {
    second = add(2);
  });
  await second;
  expect(gc.stats).toEqual({ writes: 2, commits: 2, retriedAlone: 0 });
});
