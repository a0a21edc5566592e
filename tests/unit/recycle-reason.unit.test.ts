/** Whether a worker serves another run, and if not why: the ordered rules of workers/worker/recycle-reason.ts. */
import { recycleReason, type AfterRun } from '../../workers/worker/recycle-reason';

const clean: AfterRun = { contaminated: false, globals: [], leaks: {}, agentSettled: true, priorityRestored: true, runsServed: 1, maxRunsPerWorker: 0 };

test('a clean run leaves the worker serving (MAX_RUNS_PER_WORKER=0 is unlimited)', () => {
  expect(recycleReason(clean)).toBeNull();
  expect(recycleReason({ ...clean, runsServed: 1_000_000 })).toBeNull();
});

test('each reason on its own', () => {
  expect(recycleReason({ ...clean, contaminated: true })).toBe('contaminated');
  expect(recycleReason({ ...clean, globals: ['globalThis.x'] })).toBe('globals_changed');
  expect(recycleReason({ ...clean, leaks: { timer: 1 } })).toBe('leaked_resources');
  expect(recycleReason({ ...clean, agentSettled: false })).toBe('unsettled_after_stop');
  expect(recycleReason({ ...clean, priorityRestored: false })).toBe('priority_not_restored');
  expect(recycleReason({ ...clean, maxRunsPerWorker: 3, runsServed: 3 })).toBe('max_runs');
  expect(recycleReason({ ...clean, maxRunsPerWorker: 3, runsServed: 2 })).toBeNull();
});

test('when several hold, the first in order wins: what the run left behind before the worker\'s own limits', () => {
  const all: AfterRun = { contaminated: true, globals: ['g'], leaks: { socket: 1 }, agentSettled: false, priorityRestored: false, runsServed: 1, maxRunsPerWorker: 1 };
  expect(recycleReason(all)).toBe('contaminated');
  expect(recycleReason({ ...all, contaminated: false })).toBe('globals_changed');
  expect(recycleReason({ ...all, contaminated: false, globals: [] })).toBe('leaked_resources');
  expect(recycleReason({ ...all, contaminated: false, globals: [], leaks: {} })).toBe('unsettled_after_stop');
  expect(recycleReason({ ...all, contaminated: false, globals: [], leaks: {}, agentSettled: true })).toBe('priority_not_restored');
  expect(recycleReason({ ...all, contaminated: false, globals: [], leaks: {}, agentSettled: true, priorityRestored: true })).toBe('max_runs');
});
