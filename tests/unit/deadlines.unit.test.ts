/**
 * The front's deadlines with fake timers and a stand-in cell: a stop asked of the cell, settled by the front
 * when the cell does not, the wedged cell killed when it keeps the run; the safety deadline after a run
 * started; shutdown's stop wait. And the numbers: each comes after the cell's own answer.
 */
import { createDeadlines, frontDeadlines } from '../../server/runs/deadlines';
import { newLiveRun, type LiveRun } from '../../server/runs/live-run';
import type { StopReason } from '../../protocol/stop-errors';

afterEach(() => jest.useRealTimers());

const CONFIG = { runTimeoutMs: 5000, cancelGraceMs: 500 };

function rig() {
  jest.useFakeTimers();
  const sent: unknown[] = [];
  const killed: string[] = [];
  const cell = { id: 'c1', runs: new Map<string, number | null>(), send: (msg: unknown) => sent.push(msg), killAsWedged: () => killed.push('c1') };
  const lines: [string, string][] = [];
  const log = { warn: (_f: object, msg: string) => lines.push(['warn', msg]), error: (_f: object, msg: string) => lines.push(['error', msg]) };
  const stops: [string, StopReason, string][] = [];
  const deadlines = createDeadlines({
    settings: CONFIG,
    log: log as never,
    cellOf: (run) => (run.cellId === cell.id ? (cell as never) : undefined),
    // As finishing.ts does: the run ends, and its deadlines are disarmed.
    stopped: (run, reason, message) => {
      stops.push([run.id, reason, message]);
      run.phase = 'finished';
      deadlines.clear(run);
    },
  });
  const inCell = (id: string, phase: LiveRun['phase'] = 'running') => {
    const run = newLiveRun({ id, userId: 'u', threadId: 't', agentName: 'echo', input: { text: '' }, requestId: id, correlationId: null, acceptedAt: 0 });
    run.phase = phase;
    run.cellId = 'c1';
    cell.runs.set(id, phase === 'running' ? 0 : null);
    return run;
  };
  return { deadlines, cell, sent, killed, lines, stops, inCell };
}

test('each front deadline comes after what the cell does itself', () => {
  const d = frontDeadlines(CONFIG);
  expect(d.settleStop).toBe(500 + 1500);
  expect(d.wedgedCell).toBe(10_000);
  expect(d.safety).toBe(5000 + 500 + 1500);
  expect(d.shutdownStop).toBe(500 + 1500 + 500);
  expect(d.safety).toBeGreaterThan(CONFIG.runTimeoutMs + CONFIG.cancelGraceMs);
  expect(d.settleStop).toBeGreaterThan(CONFIG.cancelGraceMs);
});

test('a run stopped before it started ends at once, nothing asked of any cell', () => {
  const { deadlines, sent, stops } = rig();
  const run = inCellLess();
  deadlines.requestStop(run, 'cancelled');
  expect(stops).toEqual([['q1', 'cancelled', 'the run was stopped before it started']]);
  expect(sent).toEqual([]);
  expect(jest.getTimerCount()).toBe(0);
});

function inCellLess(): LiveRun {
  return newLiveRun({ id: 'q1', userId: 'u', threadId: 't', agentName: 'echo', input: { text: '' }, requestId: 'q1', correlationId: null, acceptedAt: 0 });
}

test('a stop the cell settles in time: the cell is asked once, the front does nothing more', () => {
  const { deadlines, sent, stops, killed, inCell } = rig();
  const run = inCell('r1');
  deadlines.requestStop(run, 'cancelled');
  deadlines.requestStop(run, 'timeout'); // a second stop changes nothing
  expect(run.stopReason).toBe('cancelled');
  expect(sent).toEqual([{ type: 'cancel', runId: 'r1', reason: 'cancelled' }]);
  // The cell settles it (finishing disarms its deadlines).
  run.phase = 'finished';
  deadlines.clear(run);
  jest.advanceTimersByTime(60_000);
  expect(stops).toEqual([]);
  expect(killed).toEqual([]);
});

test('a stop the cell does not settle: the front settles it, then kills the cell if it still holds the run', () => {
  const { deadlines, stops, killed, lines, inCell } = rig();
  const run = inCell('r1');
  deadlines.requestStop(run, 'cancelled');
  jest.advanceTimersByTime(1999);
  expect(stops).toEqual([]);
  jest.advanceTimersByTime(1);
  expect(stops).toEqual([['r1', 'cancelled', 'the run was stopped']]);
  expect(lines).toEqual([['warn', 'cell did not settle a stopped run in time; settling it in the front']]);
  jest.advanceTimersByTime(9999);
  expect(killed).toEqual([]);
  jest.advanceTimersByTime(1);
  expect(killed).toEqual(['c1']);
  expect(lines[1]).toEqual(['error', 'cell still holds a stopped run; killing the cell']);
});

test('a cell that lets go of the run after the front settled it is not killed', () => {
  const { deadlines, cell, stops, killed, inCell } = rig();
  const run = inCell('r1');
  deadlines.requestStop(run, 'timeout');
  jest.advanceTimersByTime(2000);
  expect(stops).toEqual([['r1', 'timeout', 'the run exceeded its time budget (RUN_TIMEOUT_MS); its cell did not end it, the front did']]);
  cell.runs.delete('r1');
  jest.advanceTimersByTime(10_000);
  expect(killed).toEqual([]);
});

test('stop clears every timer, the wedged-cell watch that outlives its run included, and arms none after', () => {
  const { deadlines, stops, killed, inCell } = rig();
  const watched = inCell('r1');
  deadlines.requestStop(watched, 'cancelled');
  jest.advanceTimersByTime(2000); // settled by the front: only its wedged-cell watch is left
  expect(stops).toHaveLength(1);
  expect(jest.getTimerCount()).toBe(1);
  const stopping = inCell('r2');
  deadlines.requestStop(stopping, 'cancelled');
  deadlines.started(inCell('r3'));
  expect(jest.getTimerCount()).toBe(3);
  deadlines.stop();
  expect(jest.getTimerCount()).toBe(0);
  deadlines.started(inCell('r4'));
  expect(jest.getTimerCount()).toBe(0);
  jest.advanceTimersByTime(60_000);
  expect(killed).toEqual([]);
  expect(stops).toHaveLength(1);
});

test('the safety deadline stops a run still running past its deadline and grace, as a timeout', () => {
  const { deadlines, sent, stops, lines, inCell } = rig();
  const run = inCell('r1');
  deadlines.started(run);
  jest.advanceTimersByTime(6999);
  expect(sent).toEqual([]);
  jest.advanceTimersByTime(1);
  expect(lines).toEqual([['warn', 'run outlived its deadline in the cell']]);
  expect(sent).toEqual([{ type: 'cancel', runId: 'r1', reason: 'timeout' }]);
  expect(run.stopReason).toBe('timeout');
  jest.advanceTimersByTime(2000);
  expect(stops).toEqual([['r1', 'timeout', 'the run exceeded its time budget (RUN_TIMEOUT_MS); its cell did not end it, the front did']]);
});

test('the safety deadline leaves alone a run already being stopped, or one that runs again', () => {
  const { deadlines, sent, lines, inCell } = rig();
  const stopped = inCell('r1');
  deadlines.started(stopped);
  stopped.stopReason = 'cancelled'; // stopped meanwhile (its own stop timers are elsewhere)
  const restarted = inCell('r2');
  deadlines.started(restarted);
  deadlines.clear(restarted); // its cell died: it runs again, its deadline starts again when it does
  jest.advanceTimersByTime(60_000);
  expect(sent).toEqual([]);
  expect(lines).toEqual([]);
});

test('shutdown: every run in flight is asked to stop; the front settles those their cells do not; any still in flight at the stop wait end as shut down', async () => {
  const { deadlines, sent, stops, inCell } = rig();
  // r3 was being stopped already, its stop's timers gone (say, disarmed when its cell died and it was put back).
  const r3 = inCell('r3');
  r3.stopReason = 'cancelled';
  const runs = [inCell('r1'), inCell('r2', 'dispatched'), r3];
  const inFlight = () => runs.filter((r) => r.phase === 'dispatched' || r.phase === 'running');
  const done = deadlines.stopAtShutdown(inFlight);
  expect(sent).toEqual([
    { type: 'cancel', runId: 'r1', reason: 'cancelled' },
    { type: 'cancel', runId: 'r2', reason: 'cancelled' },
  ]);
  // r1's cell settles it; r2's never does.
  runs[0].phase = 'finished';
  deadlines.clear(runs[0]);
  await jest.advanceTimersByTimeAsync(1999);
  expect(stops).toEqual([]);
  await jest.advanceTimersByTimeAsync(1);
  expect(stops).toEqual([['r2', 'cancelled', 'the run was stopped']]);
  await jest.advanceTimersByTimeAsync(450);
  expect(stops).toHaveLength(1);
  await jest.advanceTimersByTimeAsync(100);
  await done;
  expect(stops).toEqual([
    ['r2', 'cancelled', 'the run was stopped'],
    ['r3', 'cancelled', 'the server shut down'],
  ]);
});
