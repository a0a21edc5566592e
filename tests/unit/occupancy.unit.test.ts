/**
 * Occupancy on its own: who may start. A user under USER_MAX_CONCURRENT_RUNS, in a conversation with no run
 * active; counting is per run, once.
 */
import { createOccupancy } from '../../server/runs/occupancy';

const run = (userId: string, threadId: string) => ({ userId, threadId });

test('a run is eligible while its user is under the cap and its conversation has no active run', () => {
  const o = createOccupancy({ userMaxConcurrentRuns: 2 });
  const a1 = run('a', 't1');
  expect(o.eligible(a1)).toBe(true);
  o.occupy(a1);
  expect(o.activeFor('a')).toBe(1);
  // Same conversation: never two at once, whatever the cap.
  expect(o.eligible(run('a', 't1'))).toBe(false);
  expect(o.eligible(run('b', 't1'))).toBe(false);
  // Another conversation of the same user: under the cap.
  const a2 = run('a', 't2');
  expect(o.eligible(a2)).toBe(true);
  o.occupy(a2);
  // At the cap: no third run of that user, any conversation; another user is not affected.
  expect(o.eligible(run('a', 't3'))).toBe(false);
  expect(o.eligible(run('b', 't3'))).toBe(true);
});

test('vacating frees the user place and the conversation', () => {
  const o = createOccupancy({ userMaxConcurrentRuns: 1 });
  const a1 = run('a', 't1');
  o.occupy(a1);
  expect(o.eligible(run('a', 't2'))).toBe(false);
  o.vacate(a1);
  expect(o.activeFor('a')).toBe(0);
  expect(o.eligible(run('a', 't2'))).toBe(true);
  expect(o.eligible(run('a', 't1'))).toBe(true);
});

test('a run is counted once however often it is occupied, and vacating a run not counted does nothing', () => {
  const o = createOccupancy({ userMaxConcurrentRuns: 2 });
  const a1 = run('a', 't1');
  o.occupy(a1);
  o.occupy(a1);
  expect(o.activeFor('a')).toBe(1);
  // A different run object of the same user and conversation was never counted: vacating it changes nothing.
  o.vacate(run('a', 't1'));
  expect(o.activeFor('a')).toBe(1);
  expect(o.eligible(run('a', 't1'))).toBe(false);
  o.vacate(a1);
  o.vacate(a1);
  expect(o.activeFor('a')).toBe(0);
  expect(o.eligible(run('a', 't1'))).toBe(true);
});

test('two runs of one conversation (a requeued one and its successor) keep it busy until both vacate', () => {
  const o = createOccupancy({ userMaxConcurrentRuns: 5 });
  const first = run('a', 't1');
  const second = run('a', 't1');
  o.occupy(first);
  o.occupy(second);
  o.vacate(first);
  expect(o.eligible(run('a', 't1'))).toBe(false);
  o.vacate(second);
  expect(o.eligible(run('a', 't1'))).toBe(true);
});
