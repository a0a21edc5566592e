/**
 * The fair queue on its own: per-user FIFO, round-robin across users, places held by requests being
 * accepted, and a taken run put back at the head of its user's line.
 */
import { createFairQueue } from '../../server/runs/fair-queue';
import type { LiveRun } from '../../server/runs/live-run';

const run = (userId: string, id: string) => ({ id, userId }) as LiveRun;
const ids = (runs: (LiveRun | null)[]) => runs.map((r) => r?.id ?? null);
const all = () => true;

function takeAll(q: ReturnType<typeof createFairQueue>, eligible: (r: LiveRun) => boolean = all): (string | null)[] {
  const out: (string | null)[] = [];
  // Bounded: a queue that never empties fails the test instead of hanging it.
  for (let r = q.take(eligible); r && out.length < 50; r = q.take(eligible)) out.push(r.id);
  return out;
}

test('one user: runs start in the order they were accepted', () => {
  const q = createFairQueue();
  for (const id of ['a1', 'a2', 'a3']) q.add(run('a', id));
  expect(q.size).toBe(3);
  expect(takeAll(q)).toEqual(['a1', 'a2', 'a3']);
  expect(q.size).toBe(0);
  expect(q.take(all)).toBeNull();
});

test('users are served round-robin: a flooding user never delays another by more than one run', () => {
  const q = createFairQueue();
  for (let i = 1; i <= 4; i++) q.add(run('a', `a${i}`));
  q.add(run('b', 'b1'));
  q.add(run('c', 'c1'));
  q.add(run('b', 'b2'));
  expect(takeAll(q)).toEqual(['a1', 'b1', 'c1', 'a2', 'b2', 'a3', 'a4']);
});

test('a user whose queue empties leaves the line and rejoins at the back', () => {
  const q = createFairQueue();
  q.add(run('a', 'a1'));
  q.add(run('b', 'b1'));
  q.add(run('b', 'b2'));
  expect(q.take(all)?.id).toBe('a1');
  q.add(run('a', 'a2')); // a left the line; it rejoins behind b
  expect(takeAll(q)).toEqual(['b1', 'a2', 'b2']);
});

test('take skips users whose oldest run is not eligible, without reordering them', () => {
  const q = createFairQueue();
  q.add(run('a', 'a1'));
  q.add(run('a', 'a2'));
  q.add(run('b', 'b1'));
  q.add(run('c', 'c1'));
  // a's head is not eligible: a2 must not overtake it; b is served and goes to the back.
  expect(q.take((r) => r.userId !== 'a')?.id).toBe('b1');
  expect(q.take((r) => r.userId !== 'a')?.id).toBe('c1');
  expect(q.take((r) => r.userId !== 'a')).toBeNull();
  expect(q.size).toBe(2);
  expect(takeAll(q)).toEqual(['a1', 'a2']);
});

test('a served user goes to the back of the line only if it still has runs waiting', () => {
  const q = createFairQueue();
  q.add(run('a', 'a1'));
  q.add(run('a', 'a2'));
  q.add(run('b', 'b1'));
  q.add(run('b', 'b2'));
  q.add(run('c', 'c1'));
  expect(q.take((r) => r.userId === 'b')?.id).toBe('b1'); // b to the back: a, c, b
  expect(takeAll(q)).toEqual(['a1', 'c1', 'b2', 'a2']);
});

test('addFirst puts a run back at the head of its user queue and its user at the front of the line', () => {
  const q = createFairQueue();
  q.add(run('a', 'a2'));
  q.add(run('b', 'b1'));
  const a1 = run('a', 'a1');
  q.addFirst(a1);
  q.addFirst(run('c', 'c1'));
  expect(q.size).toBe(4);
  expect(q.position(a1)).toBe(1);
  expect(q.queuedFor('a')).toBe(2);
  expect(takeAll(q)).toEqual(['c1', 'a1', 'b1', 'a2']);
});

test('remove takes a run out wherever it waits; an unknown run is refused', () => {
  const q = createFairQueue();
  const a1 = run('a', 'a1');
  const a2 = run('a', 'a2');
  const b1 = run('b', 'b1');
  q.add(a1);
  q.add(a2);
  q.add(b1);
  expect(q.remove(a2)).toBe(true);
  expect(q.remove(a2)).toBe(false);
  expect(q.remove(run('z', 'z1'))).toBe(false);
  expect(q.remove(run('a', 'a9'))).toBe(false); // user known, run not
  expect(q.size).toBe(2);
  expect(q.remove(b1)).toBe(true);
  expect(q.queuedFor('b')).toBe(0);
  // b left the line: a b run added now queues behind a.
  q.add(run('b', 'b2'));
  q.add(run('a', 'a3'));
  expect(takeAll(q)).toEqual(['a1', 'b2', 'a3']);
});

test('removing a user whose queue empties takes that user, and only that user, out of the line', () => {
  const q = createFairQueue();
  const a1 = run('a', 'a1');
  q.add(a1);
  q.add(run('b', 'b1'));
  q.add(run('c', 'c1'));
  q.remove(a1);
  expect(takeAll(q)).toEqual(['b1', 'c1']);
});

test('position is the 1-based place among the user runs, 0 when not waiting', () => {
  const q = createFairQueue();
  const a1 = run('a', 'a1');
  const a2 = run('a', 'a2');
  const b1 = run('b', 'b1');
  q.add(a1);
  q.add(b1);
  q.add(a2);
  expect([q.position(a1), q.position(a2), q.position(b1)]).toEqual([1, 2, 1]);
  expect(q.position(run('a', 'x'))).toBe(0);
  expect(q.position(run('z', 'x'))).toBe(0);
});

test('reserve holds a place for a user until released once; claimed counts waiting runs plus places held', () => {
  const q = createFairQueue();
  q.add(run('a', 'a1'));
  expect(q.claimed).toBe(1);
  expect(q.claimedFor('a')).toBe(1);
  expect(q.claimedFor('b')).toBe(0);
  const r1 = q.reserve('a');
  const r2 = q.reserve('a');
  const r3 = q.reserve('b');
  expect(q.claimed).toBe(4);
  expect(q.size).toBe(1);
  expect(q.claimedFor('a')).toBe(3);
  expect(q.claimedFor('b')).toBe(1);
  expect(q.queuedFor('a')).toBe(1);
  r1();
  r1(); // a second call does nothing
  expect(q.claimed).toBe(3);
  expect(q.claimedFor('a')).toBe(2);
  r2();
  expect(q.claimedFor('a')).toBe(1);
  r3();
  expect(q.claimedFor('b')).toBe(0);
  expect(q.claimed).toBe(1);
  // Released to zero: a new reservation starts from zero again.
  const r4 = q.reserve('b');
  expect(q.claimedFor('b')).toBe(1);
  r4();
  expect(q.claimedFor('b')).toBe(0);
});

test('values lists every waiting run; clear empties the queue and the line', () => {
  const q = createFairQueue();
  q.add(run('a', 'a1'));
  q.add(run('b', 'b1'));
  q.add(run('a', 'a2'));
  expect(ids([...q.values()]).sort()).toEqual(['a1', 'a2', 'b1']);
  q.clear();
  expect(q.size).toBe(0);
  expect([...q.values()]).toEqual([]);
  expect(q.queuedFor('a')).toBe(0);
  expect(q.take(all)).toBeNull();
  q.add(run('b', 'b2'));
  expect(takeAll(q)).toEqual(['b2']);
});
