/**
 * The cell-death judgement, case by case: who is stopped, who is queued again untouched, who is the culprit,
 * who runs again in quarantine, who fails as collateral or out of attempts.
 */
import { judgeCellDeath, type CellDeathInput, type RunInside } from '../../server/runs/cell-death';

const EXIT = { cause: 'out_of_memory', error: { code: 'OUT_OF_MEMORY' as const, message: 'the cell ran out of memory' } };

function inside(id: string, fields: Partial<RunInside> = {}): RunInside {
  return { id, phase: 'running', stopReason: null, attempt: 1, agentName: 'echo', undelivered: false, repeatable: true, ...fields };
}

function judge(runs: RunInside[], fields: Partial<CellDeathInput> = {}) {
  return judgeCellDeath({ runs, quarantineCell: false, recentWorkerKill: false, killedAsWedged: false, maxRunAttempts: 3, exit: EXIT, startsKnown: false, othersMayAct: false, ...fields });
}

test('one started run alone in its cell is the culprit: it fails with the exit error', () => {
  expect(judge([inside('r1')])).toEqual({
    decisions: [{ kind: 'fail', runId: 'r1', error: EXIT.error, collateral: false, culprit: true }],
    affectedOthers: false,
  });
});

test("a run alone is not named while another user has a worker in the cell, idle or not: what that user's runs left behind may have done it", () => {
  expect(judge([inside('r1')], { othersMayAct: true }).decisions).toEqual([{ kind: 'restart', runId: 'r1', reason: 'out_of_memory' }]);
  expect(judge([inside('r1', { repeatable: false })], { othersMayAct: true })).toEqual({
    decisions: [{ kind: 'fail', runId: 'r1', error: { code: 'WORKER_CRASHED', message: "the run's cell died (the cell ran out of memory) and agent echo is not safe to repeat" }, collateral: true, culprit: false }],
    affectedOthers: true,
  });
  // The quarantine cell's rule stands: its one run is named.
  expect(judge([inside('r1')], { othersMayAct: true, quarantineCell: true }).decisions).toEqual([{ kind: 'fail', runId: 'r1', error: EXIT.error, collateral: false, culprit: true }]);
});

test('a run alone in a cell that ran out of descriptors is a suspect, not the culprit: who took them is not known', () => {
  const descriptors = { cause: 'descriptors', error: { code: 'LIMIT_EXCEEDED' as const, message: 'no descriptor left' } };
  expect(judge([inside('r1')], { exit: descriptors }).decisions).toEqual([{ kind: 'restart', runId: 'r1', reason: 'descriptors' }]);
  // Run again alone in quarantine, it is named there.
  expect(judge([inside('r1')], { exit: descriptors, quarantineCell: true }).decisions).toEqual([{ kind: 'fail', runId: 'r1', error: descriptors.error, collateral: false, culprit: true }]);
});

test('a run alone not reported started, its cell\'s channel not read to the end (its started message may be lost), is a suspect, not the culprit', () => {
  expect(judge([inside('r1', { phase: 'dispatched' })]).decisions).toEqual([{ kind: 'restart', runId: 'r1', reason: 'out_of_memory' }]);
});

test('a run alone right after a thread of the cell was killed is a suspect, not the culprit', () => {
  expect(judge([inside('r1')], { recentWorkerKill: true }).decisions).toEqual([{ kind: 'restart', runId: 'r1', reason: 'out_of_memory' }]);
});

test('a run alone in a cell the front killed for wedging did not cause the death: it is a suspect', () => {
  expect(judge([inside('r1')], { killedAsWedged: true }).decisions).toEqual([{ kind: 'restart', runId: 'r1', reason: 'out_of_memory' }]);
});

test('several runs inside: every one is a suspect and runs again in quarantine', () => {
  const j = judge([inside('r1'), inside('r2', { phase: 'dispatched' })]);
  expect(j).toEqual({
    decisions: [
      { kind: 'restart', runId: 'r1', reason: 'out_of_memory' },
      { kind: 'restart', runId: 'r2', reason: 'out_of_memory' },
    ],
    affectedOthers: false,
  });
});

test('in the quarantine cell every suspect is the culprit, started or not, whatever its attempts', () => {
  const j = judge([inside('r1', { phase: 'dispatched', attempt: 9, repeatable: false })], { quarantineCell: true, recentWorkerKill: true });
  expect(j).toEqual({ decisions: [{ kind: 'fail', runId: 'r1', error: EXIT.error, collateral: false, culprit: true }], affectedOthers: false });
});

test('stopped runs end as stopped, whatever else is true of them, and are never suspects', () => {
  const j = judge([inside('r1', { stopReason: 'cancelled', undelivered: true, phase: 'dispatched' }), inside('r2', { stopReason: 'timeout' }), inside('r3')]);
  expect(j.decisions).toEqual([
    { kind: 'stopped', runId: 'r1', reason: 'cancelled', message: 'the run was stopped (its cell ended: the cell ran out of memory)' },
    { kind: 'stopped', runId: 'r2', reason: 'timeout', message: 'the run was stopped (its cell ended: the cell ran out of memory)' },
    // r3 is alone among the suspects, but r2 had run (a run can kill its cell once asked to stop): r3 is a suspect.
    { kind: 'restart', runId: 'r3', reason: 'out_of_memory' },
  ]);
  // Beside a stopped run that never ran agent code (never delivered), r3 is alone: the culprit.
  expect(judge([inside('r1', { stopReason: 'cancelled', undelivered: true, phase: 'dispatched' }), inside('r3')]).decisions[1]).toEqual({ kind: 'fail', runId: 'r3', error: EXIT.error, collateral: false, culprit: true });
});

test('a dispatched run the cell never received is queued again, and is not a suspect', () => {
  const j = judge([inside('r1', { phase: 'dispatched', undelivered: true }), inside('r2')]);
  expect(j.decisions).toEqual([
    { kind: 'requeue', runId: 'r1', attemptBack: true },
    { kind: 'fail', runId: 'r2', error: EXIT.error, collateral: false, culprit: true },
  ]);
});

test('a run the cell received but never reported started, its channel read to the end, never ran: queued again unsuspected, its attempt spent', () => {
  // Beside a started run, which is then alone among the suspects: the culprit.
  const j = judge([inside('r1', { phase: 'dispatched' }), inside('r2')], { startsKnown: true });
  expect(j).toEqual({
    decisions: [
      { kind: 'requeue', runId: 'r1', attemptBack: false },
      { kind: 'fail', runId: 'r2', error: EXIT.error, collateral: false, culprit: true },
    ],
    affectedOthers: false,
  });
  // Alone, and in the quarantine cell too: innocent either way.
  expect(judge([inside('r1', { phase: 'dispatched' })], { startsKnown: true }).decisions).toEqual([{ kind: 'requeue', runId: 'r1', attemptBack: false }]);
  expect(judge([inside('r1', { phase: 'dispatched' })], { startsKnown: true, quarantineCell: true }).decisions).toEqual([{ kind: 'requeue', runId: 'r1', attemptBack: false }]);
  // Never delivered at all: the attempt is given back.
  expect(judge([inside('r1', { phase: 'dispatched', undelivered: true })], { startsKnown: true }).decisions).toEqual([{ kind: 'requeue', runId: 'r1', attemptBack: true }]);
});

test('a run received but never started that used its attempts fails: an assignment that kills cells cannot go round forever', () => {
  const j = judge([inside('r1', { phase: 'dispatched', attempt: 3 })], { startsKnown: true });
  expect(j).toEqual({
    decisions: [{ kind: 'fail', runId: 'r1', collateral: false, culprit: false, error: { code: 'OUT_OF_MEMORY', message: 'the cell ran out of memory; gave up after 3 attempts' } }],
    affectedOthers: false,
  });
});

test('an undelivered mark on a run that already started does not requeue it', () => {
  const j = judge([inside('r1', { undelivered: true }), inside('r2')]);
  expect(j.decisions.map((d) => d.kind)).toEqual(['restart', 'restart']);
});

test('a queued run listed by the cell is neither requeued nor judged', () => {
  const j = judge([inside('r1', { phase: 'queued' }), inside('r2')]);
  expect(j.decisions).toEqual([{ kind: 'fail', runId: 'r2', error: EXIT.error, collateral: false, culprit: true }]);
});

test('a suspect whose agent is not safe to repeat fails as collateral: a failure affecting others', () => {
  const j = judge([inside('r1', { repeatable: false, agentName: 'pay' }), inside('r2')]);
  expect(j).toEqual({
    decisions: [
      { kind: 'fail', runId: 'r1', collateral: true, culprit: false, error: { code: 'WORKER_CRASHED', message: "the run's cell died (the cell ran out of memory) and agent pay is not safe to repeat" } },
      { kind: 'restart', runId: 'r2', reason: 'out_of_memory' },
    ],
    affectedOthers: true,
  });
});

test('a suspect that used its attempts fails with the exit code, not as collateral', () => {
  const j = judge([inside('r1', { attempt: 3 }), inside('r2', { attempt: 2 })]);
  expect(j).toEqual({
    decisions: [
      { kind: 'fail', runId: 'r1', collateral: false, culprit: false, error: { code: 'OUT_OF_MEMORY', message: 'the cell ran out of memory; gave up after 3 attempts' } },
      { kind: 'restart', runId: 'r2', reason: 'out_of_memory' },
    ],
    affectedOthers: false,
  });
});

test('no run inside: nothing to decide', () => {
  expect(judge([])).toEqual({ decisions: [], affectedOthers: false });
  expect(judge([], { quarantineCell: true })).toEqual({ decisions: [], affectedOthers: false });
});
