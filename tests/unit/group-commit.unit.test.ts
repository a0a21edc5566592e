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
  const gc = createGroupCommit(db, (err) => err instanceof WriteError || (err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE', { warn: () => undefined, info: () => undefined });
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
  expect(gc.stats).toEqual({ writes: 3, commits: 1, retriedAlone: 0, kept: 0 });
  await add(3);
  expect(gc.stats).toEqual({ writes: 4, commits: 2, retriedAlone: 0, kept: 0 });
  // Nothing queued: no empty commit follows.
  await turn();
  await turn();
  expect(gc.stats).toEqual({ writes: 4, commits: 2, retriedAlone: 0, kept: 0 });
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
  expect(gc.stats).toEqual({ writes: 3, commits: 3, retriedAlone: 3, kept: 0 });
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
  expect(gc.stats).toEqual({ writes: 0, commits: 0, retriedAlone: 0, kept: 0 });
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
  expect(gc.stats).toEqual({ writes: 2001, commits: 2, retriedAlone: 0, kept: 0 });
});

test('exactly 2000 writes make one commit', async () => {
  const { gc, add } = rig();
  await Promise.all(Array.from({ length: 2000 }, (_, i) => add(i)));
  expect(gc.stats).toEqual({ writes: 2000, commits: 1, retriedAlone: 0, kept: 0 });
});

test('flushNow commits everything queued at once, in batches of 2000, and cancels the scheduled commit', async () => {
  const { gc, add, count } = rig();
  const writes = Array.from({ length: 4001 }, (_, i) => add(i));
  gc.flushNow();
  expect(count()).toBe(4001);
  expect(gc.stats).toEqual({ writes: 4001, commits: 3, retriedAlone: 0, kept: 0 });
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
  expect(gc.stats).toEqual({ writes: 0, commits: 0, retriedAlone: 0, kept: 0 });
});

test('writes asked for while a commit resolves go into the next commit', async () => {
  const { gc, add } = rig();
  let second: Promise<number> | null = null;
  await add(1).then(() => {
    second = add(2);
  });
  await second;
  expect(gc.stats).toEqual({ writes: 2, commits: 2, retriedAlone: 0, kept: 0 });
});

describe('the storage failing (disk full, I/O error, locked past the timeout)', () => {
  const full = () => Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
  function failingRig() {
    const r = rig();
    const storage = { full: true, attempts: 0 };
    const insert = r.db.prepare('INSERT INTO t (v) VALUES (?)');
    // Applies its insert, then fails as a full disk would while `storage.full`: the transaction rolls back whole.
    const write = (v: number) => () => {
      insert.run(v);
      storage.attempts++;
      if (storage.full) throw full();
      return v;
    };
    const values = () => (r.db.prepare('SELECT v FROM t ORDER BY rowid').all() as { v: number }[]).map((row) => row.v);
    return { ...r, storage, write, values };
  }
  const until = async (check: () => boolean) => {
    for (let i = 0; i < 500 && !check(); i++) await new Promise((res) => setTimeout(res, 10));
    expect(check()).toBe(true);
  };

  test('a request fails with DB_UNAVAILABLE; acknowledged writes are kept, in order, and committed once it writes again', async () => {
    const { gc, storage, write, values } = failingRig();
    const request = gc.run(write(1), { request: true });
    const kept = [gc.run(write(2)), gc.run(write(3))];
    await expect(request).rejects.toMatchObject({ code: 'DB_UNAVAILABLE', retryAfterSeconds: 2 });
    expect(gc.failing).toBe('SQLITE_FULL');
    expect(values()).toEqual([]);
    // While kept writes wait, a request fails at once, without an attempt; a kept write waits in line.
    const tried = storage.attempts;
    await expect(gc.run(write(4), { request: true })).rejects.toMatchObject({ code: 'DB_UNAVAILABLE' });
    const later = gc.run(write(5));
    expect(storage.attempts).toBe(tried);
    // Retried on its own: still failing, still kept.
    await until(() => storage.attempts > tried);
    expect(gc.failing).toBe('SQLITE_FULL');
    storage.full = false;
    await expect(Promise.all([...kept, later])).resolves.toEqual([2, 3, 5]);
    expect(values()).toEqual([2, 3, 5]);
    expect(gc.failing).toBeNull();
    expect(gc.stats.kept).toBeGreaterThanOrEqual(2);
    // Requests are taken again.
    await expect(gc.run(write(6), { request: true })).resolves.toBe(6);
  });

  test('with nothing kept, each request is itself the next attempt: the first after the storage is back succeeds', async () => {
    const { gc, storage, write, values } = failingRig();
    await expect(gc.run(write(1), { request: true })).rejects.toMatchObject({ code: 'DB_UNAVAILABLE' });
    // Nothing acknowledged waits: not reported failing (reads still work), and no retry runs by itself.
    expect(gc.failing).toBeNull();
    await expect(gc.run(write(2), { request: true })).rejects.toMatchObject({ code: 'DB_UNAVAILABLE' });
    expect(storage.attempts).toBe(2);
    storage.full = false;
    await expect(gc.run(write(3), { request: true })).resolves.toBe(3);
    expect(values()).toEqual([3]);
  });

  test('a storage failure met while writes are retried alone keeps the rest, in order', async () => {
    const { db, gc, storage, write, values } = failingRig();
    const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
    await gc.run(() => insert.run(1));
    storage.full = false;
    // A duplicate sends the batch to be retried write by write (the batch stops at it, before the third); the storage
    // fails from the third's first try alone on.
    let tripped = false;
    const flaky = () => {
      if (!tripped) storage.full = tripped = true;
      return write(3)();
    };
    const results = Promise.allSettled([gc.run(write(2)), gc.run(() => insert.run(1)), gc.run(flaky), gc.run(write(4))]);
    await until(() => gc.failing === 'SQLITE_FULL');
    storage.full = false;
    expect((await results).map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(values()).toEqual([1, 2, 3, 4]);
  });

  test('flushNow (shutdown) makes one last attempt: what the storage still refuses fails with its error', async () => {
    const { gc, write, values } = failingRig();
    const kept = gc.run(write(1));
    await until(() => gc.failing !== null);
    gc.flushNow();
    await expect(kept).rejects.toMatchObject({ code: 'SQLITE_FULL' });
    expect(values()).toEqual([]);
  });
});

test('a disk with room for some of the kept writes takes those, in order, and the rest once there is room', async () => {
  // SQLite's max_page_count stands for the disk's free space: SQLITE_FULL past it, as on a full disk.
  const db = new Database(':memory:');
  db.exec('CREATE TABLE b (v INTEGER NOT NULL, p BLOB NOT NULL)');
  const gc = createGroupCommit(db, () => false, { warn: () => undefined, info: () => undefined });
  const room = (pages: number) => db.pragma(`max_page_count = ${(db.pragma('page_count', { simple: true }) as number) + pages}`);
  const values = () => (db.prepare('SELECT v FROM b ORDER BY rowid').all() as { v: number }[]).map((row) => row.v);
  const blob = Buffer.alloc(64 * 1024, 7); // 17 pages of 4 KiB
  const insert = db.prepare('INSERT INTO b (v, p) VALUES (?, ?)');
  room(0);
  const done: number[] = [];
  const kept = Array.from({ length: 10 }, (_, v) => gc.run(() => insert.run(v, blob)).then(() => void done.push(v)));
  const until = async (check: () => boolean, ms: number) => {
    for (const end = Date.now() + ms; !check() && Date.now() < end; ) await new Promise((res) => setTimeout(res, 10));
    return check();
  };
  expect(await until(() => gc.failing === 'SQLITE_FULL', 5000)).toBe(true);
  // Room for about 5 of the 10: retried whole, the batch never fit.
  room(5 * 17 + 8);
  // Some taken, and the next attempt refused again (between a commit and that attempt it is not failing).
  expect(await until(() => done.length >= 4 && gc.failing === 'SQLITE_FULL', 15_000)).toBe(true);
  // The first ones, in order; not all (no room for them).
  expect(done).toEqual(values());
  expect(values()).toEqual(Array.from({ length: values().length }, (_, i) => i));
  expect(values().length).toBeLessThan(10);
  room(1000);
  await Promise.all(kept);
  expect(values()).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  expect(gc.failing).toBeNull();
}, 30_000);
