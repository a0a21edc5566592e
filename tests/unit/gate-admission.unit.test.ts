/** One run's share of the worker query gate (server/store/gate-admission.ts): one at a time, a bounded wait, a pace. */
import type { LiveRun } from '../../server/runs/live-run';
import { answerBytes, createGateAdmission, type GateLimits } from '../../server/store/gate-admission';

const runOf = (id: string) => ({ id }) as unknown as LiveRun;
const turns = async (n = 20) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};
const FAST: GateLimits = { maxWaiting: 16, statementsPerSec: 1e6, statementBurst: 1e6, bytesPerSec: 1e12, byteBurst: 1e12 };

/** A clock the test moves: sleeps resolve when it has moved past them. */
function fakeClock() {
  let now = 0;
  const sleepers: { until: number; wake: () => void }[] = [];
  return {
    now: () => now,
    sleep: (ms: number) => new Promise<void>((wake) => sleepers.push({ until: now + ms, wake })),
    async advance(ms: number) {
      now += ms;
      for (const s of sleepers.splice(0)) if (s.until <= now) s.wake();
      else sleepers.push(s);
      await turns();
    },
  };
}

test("a run's statements run one at a time, in the order they came; another run's do not wait for them", async () => {
  const admission = createGateAdmission(FAST);
  const log: string[] = [];
  const releases: (() => void)[] = [];
  const held = (name: string) => () => new Promise<number>((resolve) => (log.push(`start ${name}`), releases.push(() => (log.push(`end ${name}`), resolve(1)))));
  const a = runOf('a');
  const b = runOf('b');
  expect(admission.admit(a, held('a1'))).toBeNull();
  expect(admission.admit(a, held('a2'))).toBeNull();
  expect(admission.admit(b, held('b1'))).toBeNull();
  await turns();
  expect(log).toEqual(['start a1', 'start b1']);
  releases.shift()!();
  await turns();
  expect(log).toEqual(['start a1', 'start b1', 'end a1', 'start a2']);
});

test('past maxWaiting a statement is refused too_many_waiting, and admitted again once the run caught up', async () => {
  const admission = createGateAdmission({ ...FAST, maxWaiting: 2 });
  const run = runOf('r');
  let release!: () => void;
  expect(admission.admit(run, () => new Promise<number>((r) => (release = () => r(0))))).toBeNull();
  await turns();
  // The first executes; two may wait behind it.
  expect(admission.admit(run, async () => 0)).toBeNull();
  expect(admission.admit(run, async () => 0)).toBeNull();
  expect(admission.admit(run, async () => 0)).toBe('too_many_waiting');
  release();
  await turns();
  expect(admission.admit(run, async () => 0)).toBeNull();
});

test('after its burst a run is paced to statementsPerSec: delayed, never refused; another run keeps its own burst', async () => {
  const clock = fakeClock();
  const admission = createGateAdmission({ ...FAST, statementsPerSec: 10, statementBurst: 3 }, clock);
  const run = runOf('r');
  let ran = 0;
  for (let i = 0; i < 5; i++) expect(admission.admit(run, async () => (ran++, 0))).toBeNull();
  await turns();
  expect(ran).toBe(3);
  await clock.advance(100);
  expect(ran).toBe(4);
  await clock.advance(100);
  expect(ran).toBe(5);
  let other = 0;
  for (let i = 0; i < 3; i++) admission.admit(runOf('o'), async () => (other++, 0));
  await turns();
  expect(other).toBe(3);
});

test('answers are charged to the run: once it owes bytes, its next statement waits until bytesPerSec has paid them', async () => {
  const clock = fakeClock();
  const admission = createGateAdmission({ ...FAST, bytesPerSec: 1000, byteBurst: 1000 }, clock);
  const run = runOf('r');
  let ran = 0;
  admission.admit(run, async () => (ran++, 3000));
  admission.admit(run, async () => (ran++, 0));
  await turns();
  // 1000 of burst, 3000 spent: 2000 owed, 2 s at 1000 a second.
  expect(ran).toBe(1);
  await clock.advance(1900);
  expect(ran).toBe(1);
  await clock.advance(100);
  expect(ran).toBe(2);
});

test('a failing statement frees its place and is charged nothing', async () => {
  const admission = createGateAdmission({ ...FAST, maxWaiting: 1 });
  const run = runOf('r');
  expect(admission.admit(run, () => Promise.reject(new Error('boom')))).toBeNull();
  await turns();
  let ran = false;
  expect(admission.admit(run, async () => ((ran = true), 0))).toBeNull();
  await turns();
  expect(ran).toBe(true);
});

test('answerBytes weighs strings by length, anything else 8', () => {
  expect(answerBytes(3)).toBe(8);
  expect(answerBytes({ columnNames: ['a', 'b'], columnTypes: [], rows: [['xyz', 1], ['', null]] } as never)).toBe(3 + 8 + 0 + 8);
});
