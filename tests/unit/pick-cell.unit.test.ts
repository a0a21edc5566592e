/**
 * Which cell takes a user's run (server/cells/pick-cell.ts), from what the front learned of the cells' workers
 * (server/cells/user-workers.ts): where the user's worker is idle first, so its run does not wait for a thread
 * start while that worker sits idle in the other cell.
 */
import { pickCell } from '../../server/cells/pick-cell';
import { GONE_SUSPECT_MS, USER_WORKER_MEMORY_MS, UserWorkers } from '../../server/cells/user-workers';

function clock() {
  let t = 1_000_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

const cell = (name: string, freeSlots: number, userWorkers: UserWorkers, quarantine = false) => ({ name, freeSlots, userWorkers, quarantine });

/** `userId`'s run `runId` ran on `workerId` and ended; `kept`: its worker serves again. */
function ran(w: UserWorkers, runId: string, userId: string, workerId: number, kept = true) {
  w.dispatched(runId, userId);
  w.started(runId, workerId);
  w.finished(runId, kept);
}

test("a user's worker idle in a cell: that cell, though another has more free slots and served the user too", () => {
  const t = clock();
  const a = new UserWorkers(t.now);
  const b = new UserWorkers(t.now);
  ran(a, 'r1', 'u', 7);
  ran(b, 'r2', 'u', 3);
  // u's worker in b is busy now: a holds its idle one.
  b.dispatched('r3', 'u');
  b.started('r3', 3);
  expect(a.idleFor('u')).toBe(1);
  expect(b.idleFor('u')).toBe(0);
  expect(pickCell([cell('b', 2, b), cell('a', 1, a)], 'u')!.name).toBe('a');
  // Another user with no worker anywhere: the most free slots.
  expect(pickCell([cell('a', 1, a), cell('b', 2, b)], 'v')!.name).toBe('b');
});

test('a worker that ended with its run (recycled, killed, crashed) is no longer idle for its user', () => {
  const t = clock();
  const a = new UserWorkers(t.now);
  ran(a, 'r1', 'u', 7, false);
  expect(a.idleFor('u')).toBe(0);
  // The cell still served the user lately: it comes before a cell that never did, at equal free slots.
  const b = new UserWorkers(t.now);
  expect(pickCell([cell('b', 1, b), cell('a', 1, a)], 'u')!.name).toBe('a');
  // ...but after one that holds the user's idle worker.
  ran(b, 'r2', 'u', 2);
  expect(pickCell([cell('a', 2, a), cell('b', 1, b)], 'u')!.name).toBe('b');
});

test("runs sent and not started yet take the user's idle workers first", () => {
  const t = clock();
  const a = new UserWorkers(t.now);
  ran(a, 'r1', 'u', 7);
  ran(a, 'r2', 'u', 8);
  expect(a.idleFor('u')).toBe(2);
  a.dispatched('r3', 'u');
  expect(a.idleFor('u')).toBe(1);
  a.dispatched('r4', 'u');
  expect(a.idleFor('u')).toBe(0);
  // r3 never started (stopped while queued in the cell): its claim is given back.
  a.finished('r3', false);
  expect(a.idleFor('u')).toBe(1);
});

test("a user idle past a worker's idle timeout is forgotten; one with a run still in the cell is not", () => {
  const t = clock();
  const a = new UserWorkers(t.now);
  ran(a, 'r1', 'u', 7);
  a.dispatched('r2', 'long');
  a.started('r2', 9);
  t.advance(USER_WORKER_MEMORY_MS);
  expect(a.serves('u')).toBe(false);
  expect(a.idleFor('u')).toBe(0);
  expect(a.serves('long')).toBe(true);
  a.finished('r2', true);
  expect(a.idleFor('long')).toBe(1);
});

test('full cells and quarantine cells are never picked', () => {
  const t = clock();
  const a = new UserWorkers(t.now);
  ran(a, 'r1', 'u', 7);
  expect(pickCell([cell('a', 0, a), cell('q', 1, new UserWorkers(t.now), true)], 'u')).toBeNull();
  expect(pickCell([null, cell('a', 0, a), cell('c', 1, new UserWorkers(t.now))], 'u')!.name).toBe('c');
});

test("a worker idle for a worker's idle timeout no longer counts (it may have retired), though its user stays busy", () => {
  const t = clock();
  const a = new UserWorkers(t.now);
  ran(a, 'r1', 'u', 7);
  t.advance(USER_WORKER_MEMORY_MS - 1);
  a.dispatched('r2', 'u');
  a.started('r2', 8);
  expect(a.idleFor('u')).toBe(1);
  t.advance(1);
  expect(a.idleFor('u')).toBe(0);
  expect(a.serves('u')).toBe(true);
  a.finished('r2', true);
  expect(a.idleFor('u')).toBe(1);
});

test("the users who may still act in a cell: every user a worker there served, busy, idle or long idle, until the cell says it is gone", () => {
  const t = clock();
  const w = new UserWorkers(t.now);
  ran(w, 'r1', 'mallory', 7);
  ran(w, 'r2', 'bob', 8);
  // Idle far past the memory the cell choice keeps: its code may still run there.
  t.advance(10 * USER_WORKER_MEMORY_MS);
  expect(w.idleFor('mallory')).toBe(0);
  expect([...w.usersWithWorkers()].sort()).toEqual(['bob', 'mallory']);
  // THREAD_REUSE=any: a worker serves several users in turn, and keeps them all.
  ran(w, 'r3', 'carol', 8);
  // Gone: its users stay suspects a moment (what it did can outlast it), then no more.
  w.gone(7);
  expect([...w.usersWithWorkers()].sort()).toEqual(['bob', 'carol', 'mallory']);
  t.advance(GONE_SUSPECT_MS);
  expect([...w.usersWithWorkers()].sort()).toEqual(['bob', 'carol']);
  w.gone(8);
  t.advance(GONE_SUSPECT_MS);
  expect([...w.usersWithWorkers()]).toEqual([]);
});
