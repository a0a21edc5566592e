/**
 * The cell's describe goes to the worker that warmed first (workers/cell/warm-first.ts): Piscina counts the
 * workers it starts with as ready before they are, and would give it to the first idle one.
 */
import { Piscina } from 'piscina';
import { describeFirstWarm, describeOn, firstIdle } from '../../workers/cell/warm-first';

type Balancer = Parameters<typeof describeFirstWarm>[0];
type Task = Parameters<Balancer>[0];
type W = Parameters<Balancer>[1][number];

const worker = (id: number, currentUsage = 0, more: Partial<W> = {}) => ({ id, currentUsage, terminating: false, destroyed: false, isRunningAbortableTask: false, ...more }) as unknown as W;
const task = (extra: object = {}) => ({ isAbortable: false, ...extra }) as unknown as Task;

test('a describe goes to the worker that warmed first, though Piscina lists it last', () => {
  const workers = [worker(1), worker(2), worker(3)];
  const next = jest.fn(() => workers[0]!);
  expect(describeFirstWarm(next)(task(describeOn(3)), workers)).toBe(workers[2]);
  expect(next).not.toHaveBeenCalled();
});

test('that worker busy or going: the describe goes to the first idle one', () => {
  const next = jest.fn(() => null);
  const busy = [worker(1, 1), worker(2), worker(3, 1)];
  expect(describeFirstWarm(next)(task(describeOn(3)), busy)).toBe(busy[1]);
  const going = [worker(1), worker(3, 0, { terminating: true })];
  expect(describeFirstWarm(next)(task(describeOn(3)), going)).toBe(going[0]);
});

test('every other task is the next balancer’s (same-user affinity, or the first idle worker)', () => {
  const workers = [worker(1), worker(2)];
  const next = jest.fn(() => workers[1]!);
  const run = task({ [Piscina.queueOptionsSymbol]: { userId: 'u' } });
  expect(describeFirstWarm(next)(run, workers)).toBe(workers[1]);
  expect(next).toHaveBeenCalledWith(run, workers);
  const any = firstIdle(() => true);
  expect(any(task(), [worker(1, 1), worker(2, 0, { destroyed: true }), worker(3)])!.id).toBe(3);
  expect(any(task(), [worker(1, 1)])).toBeNull();
});

test('THREAD_REUSE=any: a worker that has warmed before one still warming, else the first idle', () => {
  const workers = [worker(1), worker(2), worker(3)];
  expect(firstIdle((id) => id === 2)(task(), workers)!.id).toBe(2);
  expect(firstIdle(() => false)(task(), workers)!.id).toBe(1);
});
