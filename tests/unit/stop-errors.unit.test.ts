/** The one builder of stopped runs' errors: codes by reason, one TIMEOUT wording, CANCELLED texts per ending. */
import { stopError, type StopEnding } from '../../protocol/stop-errors';

const ENDINGS: StopEnding[] = ['agent', 'terminated', 'not_started', 'front', 'shutdown', { cellEnded: 'the cell ran out of memory' }];

test('a timeout is TIMEOUT and a cancellation CANCELLED, however the run ended', () => {
  for (const ending of ENDINGS) {
    expect(stopError('timeout', ending).code).toBe('TIMEOUT');
    expect(stopError('cancelled', ending).code).toBe('CANCELLED');
  }
});

test('every TIMEOUT a process decides names the budget the same way, then says how the run ended', () => {
  expect(stopError('timeout', 'agent').message).toBe('the run exceeded its time budget (RUN_TIMEOUT_MS)');
  expect(stopError('timeout', 'terminated').message).toBe('the run exceeded its time budget (RUN_TIMEOUT_MS) and its worker was terminated');
  expect(stopError('timeout', 'front').message).toBe('the run exceeded its time budget (RUN_TIMEOUT_MS); its cell did not end it, the front did');
});

test('CANCELLED texts say how the run ended', () => {
  expect(ENDINGS.map((e) => stopError('cancelled', e).message)).toEqual([
    'the run was stopped',
    'the run was stopped and its thread terminated',
    'the run was stopped before it started',
    'the run was stopped',
    'the server shut down',
    'the run was stopped (its cell ended: the cell ran out of memory)',
  ]);
  expect(stopError('timeout', { cellEnded: 'x' }).message).toBe('the run was stopped (its cell ended: x)');
});
