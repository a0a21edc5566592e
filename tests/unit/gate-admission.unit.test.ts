/** One run's share of the worker query gate (server/store/gate-admission.ts): one at a time, a bounded wait, a budget. */
import type { LiveRun } from '../../server/runs/live-run';
import { answerBytes, createGateAdmission } from '../../server/store/gate-admission';

const runOf = (id: string) => ({ id }) as unknown as LiveRun;
const turns = async (n = 20) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

test("a run's statements run one at a time, in the order they came; another run's do not wait for them", async () => {
  const admission = createGateAdmission({ maxWaiting: 16, maxStatements: 100, maxAnswerBytes: 1e9 });
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
  const admission = createGateAdmission({ maxWaiting: 2, maxStatements: 100, maxAnswerBytes: 1e9 });
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

test('a run has maxStatements statements and maxAnswerBytes of answers over its life, then run_budget', async () => {
  const counted = createGateAdmission({ maxWaiting: 100, maxStatements: 3, maxAnswerBytes: 1e9 });
  const r1 = runOf('r1');
  for (let i = 0; i < 3; i++) expect(counted.admit(r1, async () => 1)).toBeNull();
  expect(counted.admit(r1, async () => 1)).toBe('run_budget');
  expect(counted.admit(runOf('r2'), async () => 1)).toBeNull();

  const weighed = createGateAdmission({ maxWaiting: 100, maxStatements: 100, maxAnswerBytes: 1000 });
  const r3 = runOf('r3');
  expect(weighed.admit(r3, async () => 999)).toBeNull();
  await turns();
  expect(weighed.admit(r3, async () => 1)).toBeNull();
  await turns();
  expect(weighed.admit(r3, async () => 1)).toBe('run_budget');
});

test('a failing statement frees its place and counts nothing', async () => {
  const admission = createGateAdmission({ maxWaiting: 1, maxStatements: 100, maxAnswerBytes: 10 });
  const run = runOf('r');
  expect(admission.admit(run, () => Promise.reject(new Error('boom')))).toBeNull();
  await turns();
  expect(admission.admit(run, async () => 5)).toBeNull();
  await turns();
  expect(admission.admit(run, async () => 5)).toBeNull();
  await turns();
  expect(admission.admit(run, async () => 0)).toBe('run_budget');
});

test('answerBytes weighs strings by length, anything else 8', () => {
  expect(answerBytes(3)).toBe(8);
  expect(answerBytes({ columnNames: ['a', 'b'], columnTypes: [], rows: [['xyz', 1], ['', null]] } as never)).toBe(3 + 8 + 0 + 8);
});
