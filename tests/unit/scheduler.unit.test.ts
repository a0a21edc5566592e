/**
 * The scheduler with stand-in cells: who is dispatched, in which order and where (quarantine first, the fair
 * queue, the per-user cap and one run per conversation), what happens to runs put back, quarantined or
 * released, the run_queued notice, and the pump timer (only between start and stop).
 */
import type { CellHandle } from '../../server/cells/cell-handle';
import { newLiveRun, type LiveRun } from '../../server/runs/live-run';
import { createScheduler } from '../../server/runs/scheduler';

afterEach(() => jest.useRealTimers());

const mkRun = (userId: string, id: string, threadId = `t-${id}`) =>
  newLiveRun({ id, userId, threadId, agentName: 'echo', input: { text: id }, requestId: id, correlationId: null, acceptedAt: 0 });

function rig(userMaxConcurrentRuns = 10, caps = { maxQueuedRuns: 100, userMaxQueuedRuns: 100 }) {
  const dispatched: string[] = [];
  const refused: string[] = [];
  const notices: [string, number][] = [];
  const room = { serving: 0, quarantine: 0, killers: 0, free: 0 };
  /** Users whose runs a cell prefers (supervisor.pick(userId)). */
  const affinity = new Map<string, string>();
  const cell = (id: string) => ({ id }) as CellHandle;
  /** Users whose run killed a cell (cell-killers.ts). */
  const killers = new Set<string>();
  const cells = {
    pick: (userId?: string) => (room.serving <= 0 ? null : userId !== undefined && affinity.has(userId) ? cell(affinity.get(userId)!) : cell('c1')),
    pickQuarantine: () => (room.quarantine > 0 ? cell('q1') : null),
    pickKillerCell: () => (room.killers > 0 ? cell('k') : null),
    cells: () => [{ freeSlots: room.free }],
  };
  const s = createScheduler({
    cells: cells as never,
    dispatch: (run: LiveRun, c: CellHandle) => {
      run.phase = 'dispatched';
      dispatched.push(`${run.id}@${c.id}`);
      if (c.id === 'q1') room.quarantine--;
      else if (c.id === 'k') room.killers--;
      else room.serving--;
    },
    onStillWaiting: (run, position) => notices.push([run.id, position]),
    metrics: { runsRefused: { inc: (labels: { code: string }) => refused.push(labels.code) } } as never,
    settings: { userMaxConcurrentRuns, ...caps },
    killers: { has: (userId: string) => killers.has(userId), get any() { return killers.size > 0; } },
  });
  return { s, dispatched, notices, room, affinity, refused, killers };
}

test('pump dispatches in fair order while the cells have room, then stops', () => {
  const { s, dispatched, room } = rig();
  for (const r of [mkRun('a', 'a1'), mkRun('a', 'a2'), mkRun('b', 'b1')]) s.enqueue(r);
  s.pump();
  expect(dispatched).toEqual([]);
  room.serving = 2;
  s.pump();
  expect(dispatched).toEqual(['a1@c1', 'b1@c1']);
  expect(s.waiting).toBe(1);
  room.serving = 5;
  s.pump();
  expect(dispatched).toEqual(['a1@c1', 'b1@c1', 'a2@c1']);
  expect(s.waiting).toBe(0);
});

test('a user at the concurrency cap waits, without its later runs overtaking, while others are served', () => {
  const { s, dispatched, room } = rig(1);
  const a1 = mkRun('a', 'a1');
  s.enqueue(a1);
  s.enqueue(mkRun('a', 'a2'));
  s.enqueue(mkRun('b', 'b1'));
  room.serving = 10;
  s.pump();
  expect(dispatched).toEqual(['a1@c1', 'b1@c1']);
  // a1 ends: a's place is free again.
  s.release(a1);
  s.pump();
  expect(dispatched).toEqual(['a1@c1', 'b1@c1', 'a2@c1']);
});

test('a conversation runs one run at a time, in order, whatever the user cap', () => {
  const { s, dispatched, room } = rig(10);
  const first = mkRun('a', 'a1', 'conv');
  s.enqueue(first);
  s.enqueue(mkRun('a', 'a2', 'conv'));
  s.enqueue(mkRun('b', 'b1', 'other'));
  room.serving = 10;
  s.pump();
  expect(dispatched).toEqual(['a1@c1', 'b1@c1']);
  s.release(first);
  s.pump();
  expect(dispatched).toEqual(['a1@c1', 'b1@c1', 'a2@c1']);
});

test('a run goes to the cell that prefers its user when there is one', () => {
  const { s, dispatched, room, affinity } = rig();
  affinity.set('b', 'c2');
  s.enqueue(mkRun('a', 'a1'));
  s.enqueue(mkRun('b', 'b1'));
  room.serving = 2;
  s.pump();
  expect(dispatched).toEqual(['a1@c1', 'b1@c2']);
});

test('suspects in quarantine go first, to quarantine cells only, and stop counting against their user meanwhile', () => {
  const { s, dispatched, room } = rig(1);
  const suspect = mkRun('a', 'a1');
  s.enqueue(suspect);
  room.serving = 1;
  s.pump();
  expect(dispatched).toEqual(['a1@c1']);
  // Its cell died: it waits for quarantine, and no longer holds a's only place.
  suspect.phase = 'queued';
  suspect.suspect = true;
  s.quarantine(suspect);
  s.enqueue(mkRun('a', 'a2'));
  expect(s.waiting).toBe(2);
  room.serving = 1;
  s.pump(); // no quarantine cell free: the suspect waits, a2 goes
  expect(dispatched).toEqual(['a1@c1', 'a2@c1']);
  room.quarantine = 1;
  room.serving = 1;
  s.pump();
  expect(dispatched).toEqual(['a1@c1', 'a2@c1', 'a1@q1']);
  expect(s.waiting).toBe(0);
});

test('putBack: a run that never reached its cell returns to the head of its user line; a suspect to quarantine', () => {
  const { s, dispatched, room } = rig();
  const a1 = mkRun('a', 'a1');
  s.enqueue(a1);
  room.serving = 1;
  s.pump();
  s.enqueue(mkRun('a', 'a2'));
  a1.phase = 'queued';
  s.putBack(a1);
  room.serving = 1;
  s.pump();
  expect(dispatched).toEqual(['a1@c1', 'a1@c1']);
  const b1 = mkRun('b', 'b1');
  s.enqueue(b1);
  room.serving = 2;
  s.pump();
  expect(dispatched).toEqual(['a1@c1', 'a1@c1', 'a2@c1', 'b1@c1']);
  b1.phase = 'queued';
  b1.suspect = true;
  s.putBack(b1);
  expect(s.waitingRuns().map((r) => r.id)).toEqual(['b1']);
  room.serving = 1;
  s.pump(); // a suspect waits for a quarantine cell, never a serving one
  expect(dispatched).toHaveLength(4);
  room.quarantine = 1;
  s.pump();
  expect(dispatched.at(-1)).toBe('b1@q1');
});

test('cell killers\' runs go only to the cell killers\' quarantine cell, one at a time, in turn; nobody else waits for them', () => {
  const { s, dispatched, room, killers } = rig(10);
  killers.add('k').add('j');
  const k1 = mkRun('k', 'k1');
  for (const r of [k1, mkRun('k', 'k2'), mkRun('j', 'j1'), mkRun('b', 'b1')]) s.enqueue(r);
  const suspect = mkRun('c', 'c1');
  suspect.suspect = true;
  s.quarantine(suspect);
  room.serving = 5;
  room.quarantine = 5;
  s.pump(); // the killers' cell is not ready: their runs wait; the suspect and b's run go
  expect(dispatched).toEqual(['c1@q1', 'b1@c1']);
  room.killers = 1;
  s.pump();
  expect(dispatched).toEqual(['c1@q1', 'b1@c1', 'k1@k']);
  s.pump(); // its cell is taken: j1 and k2 wait however much room the other cells have
  expect(dispatched).toHaveLength(3);
  // k1 ended (it killed its cell: k is still in quarantine); the cell is back: j's turn, then k's.
  s.release(k1);
  room.killers = 1;
  s.pump();
  expect(dispatched.at(-1)).toBe('j1@k');
});

test('a user no longer in quarantine has its runs served by serving cells again', () => {
  const { s, dispatched, room, killers } = rig(10);
  killers.add('k');
  s.enqueue(mkRun('k', 'k1'));
  room.serving = 1;
  s.pump();
  expect(dispatched).toEqual([]);
  killers.delete('k');
  s.pump();
  expect(dispatched).toEqual(['k1@c1']);
});

test('release takes a run out wherever it waits', () => {
  const { s, dispatched, room } = rig();
  const a1 = mkRun('a', 'a1');
  const b1 = mkRun('b', 'b1');
  s.enqueue(a1);
  s.quarantine(b1);
  s.release(a1);
  s.release(b1);
  expect(s.waiting).toBe(0);
  room.serving = 5;
  room.quarantine = 5;
  s.pump();
  expect(dispatched).toEqual([]);
});

/** The error the promise rejects with (fulfilled: the test fails). */
async function refusal(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a refusal');
    },
    (err: unknown) => err,
  );
}

test('admit counts waiting runs and places held by requests being accepted against both caps, and refuses OVERLOADED', async () => {
  const { s, room, refused } = rig(10, { maxQueuedRuns: 3, userMaxQueuedRuns: 2 });
  s.enqueue(mkRun('a', 'a1'));
  const release = await s.admit('a');
  // a: one waiting, one place held (USER_MAX_QUEUED_RUNS=2).
  expect(await refusal(s.admit('a'))).toMatchObject({ code: 'OVERLOADED', message: expect.stringMatching(/you have 2 runs waiting \(USER_MAX_QUEUED_RUNS\)/), retryAfterSeconds: 5 });
  const releaseB = await s.admit('b');
  // Three claimed in all (MAX_QUEUED_RUNS=3).
  expect(await refusal(s.admit('c'))).toMatchObject({ code: 'OVERLOADED', message: expect.stringMatching(/MAX_QUEUED_RUNS=3/), retryAfterSeconds: 2 });
  // The cells' free workers add to MAX_QUEUED_RUNS.
  room.free = 1;
  const releaseC = await s.admit('c');
  room.free = 0;
  expect(refused).toEqual(['OVERLOADED', 'OVERLOADED']);
  // A release gives the place back: a has one waiting again, b nothing.
  release();
  releaseB();
  releaseC();
  (await s.admit('a'))();
  (await s.admit('b'))();
});

test('a burst of admissions started together is held to the caps: each is checked and held in the turn it is called', async () => {
  const { s, refused } = rig(10, { maxQueuedRuns: 5, userMaxQueuedRuns: 3 });
  const results = await Promise.allSettled([...'aaaabbbbcc'].map((user) => s.admit(user)));
  expect(results.map((r) => r.status === 'fulfilled')).toEqual([true, true, true, false, true, true, false, false, false, false]);
  expect(refused).toHaveLength(5);
});

test('a newly accepted run still waiting after a second hears its position; a dispatched or released one does not', () => {
  jest.useFakeTimers();
  const { s, notices, room } = rig();
  const a1 = mkRun('a', 'a1');
  const a2 = mkRun('a', 'a2');
  const a3 = mkRun('a', 'a3');
  const b1 = mkRun('b', 'b1');
  s.enqueueAccepted(a1);
  s.enqueueAccepted(a2);
  s.enqueueAccepted(a3);
  s.enqueueAccepted(b1);
  s.enqueue(mkRun('c', 'c1')); // recovered at start-up: no notice
  room.serving = 1;
  s.pump(); // a1 goes
  s.release(a3);
  // a3's notice is disarmed with it (a1's stays armed: it may be put back in line before it fires).
  expect(jest.getTimerCount()).toBe(3);
  jest.advanceTimersByTime(999);
  expect(notices).toEqual([]);
  jest.advanceTimersByTime(1);
  expect(notices).toEqual([
    ['a2', 1],
    ['b1', 1],
  ]);
  expect(jest.getTimerCount()).toBe(0);
});

test('dropWaiting empties the line, returns what waited, and cancels their notices', () => {
  jest.useFakeTimers();
  const { s, notices } = rig();
  s.enqueueAccepted(mkRun('a', 'a1'));
  s.quarantine(mkRun('b', 'b1'));
  expect(s.dropWaiting().map((r) => r.id)).toEqual(['a1', 'b1']);
  expect(s.waiting).toBe(0);
  expect(jest.getTimerCount()).toBe(0);
  jest.advanceTimersByTime(5000);
  expect(notices).toEqual([]);
});

test('the periodic pump runs only between start and stop, and only while runs wait', () => {
  jest.useFakeTimers();
  const { s, dispatched, room } = rig();
  expect(jest.getTimerCount()).toBe(0); // creating the scheduler starts nothing
  s.enqueue(mkRun('a', 'a1'));
  room.serving = 1;
  jest.advanceTimersByTime(1000);
  expect(dispatched).toEqual([]);
  s.start();
  s.start(); // once
  expect(jest.getTimerCount()).toBe(1);
  jest.advanceTimersByTime(250);
  expect(dispatched).toEqual(['a1@c1']);
  s.stop();
  expect(jest.getTimerCount()).toBe(0);
  s.enqueue(mkRun('a', 'a2'));
  room.serving = 1;
  jest.advanceTimersByTime(1000);
  expect(dispatched).toEqual(['a1@c1']);
});

test('stop also clears the pending run_queued notices: no timer outlives the scheduler', () => {
  jest.useFakeTimers();
  const { s, notices } = rig();
  s.start();
  s.enqueueAccepted(mkRun('a', 'a1'));
  s.enqueueAccepted(mkRun('a', 'a2'));
  expect(jest.getTimerCount()).toBe(3);
  s.stop();
  expect(jest.getTimerCount()).toBe(0);
  jest.advanceTimersByTime(5000);
  expect(notices).toEqual([]);
});

test('several nodes: a pump that comes while a claim is on its way claims again once it is back; pump says whether it claims', async () => {
  const claims: number[] = [];
  let answerFirst: (runs: LiveRun[]) => void = () => undefined;
  const room = { free: 2 };
  const s = createScheduler({
    cells: { pick: () => null, pickQuarantine: () => null, cells: () => [{ freeSlots: room.free }] } as never,
    dispatch: () => undefined,
    onStillWaiting: () => undefined,
    metrics: { runsRefused: { inc: () => undefined } } as never,
    settings: { userMaxConcurrentRuns: 10, maxQueuedRuns: 100, userMaxQueuedRuns: 100 },
    killers: { has: () => false, any: false },
    claim: (max) => {
      claims.push(max);
      return claims.length === 1 ? new Promise<LiveRun[]>((resolve) => (answerFirst = resolve)) : Promise.resolve([]);
    },
  });
  const turns = () => new Promise((resolve) => setImmediate(resolve));
  expect(s.pump()).toBe(true);
  // The run accepted now may not be seen by the claim on its way: this pump is remembered, not dropped.
  expect(s.pump()).toBe(true);
  expect(claims).toEqual([2]);
  answerFirst([]);
  await turns();
  await turns();
  expect(claims).toEqual([2, 2]);
  // Nothing asked meanwhile: no third claim.
  await turns();
  await turns();
  expect(claims).toEqual([2, 2]);
  // No room: no claim (the caller wakes the other nodes instead).
  room.free = 0;
  expect(s.pump()).toBe(false);
  expect(claims).toEqual([2, 2]);
});
