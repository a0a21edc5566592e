/**
 * THREAD_REUSE=same_user's balancer (workers/cell/user-affinity.ts): a user's run goes to its own idle worker, else
 * to a fresh one, warm before cold (a cell's first workers are counted ready by Piscina before they warm).
 */
import { createUserAffinity, routeOptions } from '../../workers/cell/user-affinity';

type Balancer = ReturnType<typeof createUserAffinity>['balancer'];
type W = Parameters<Balancer>[1][number];
type Task = Parameters<Balancer>[0];

const worker = (id: number, currentUsage = 0) => ({ id, currentUsage, terminating: false, destroyed: false, isRunningAbortableTask: false }) as unknown as W;
const run = (userId: string) => routeOptions(userId) as unknown as Task;

function affinity(warm: number[]) {
  return createUserAffinity({ workers: () => 3, ready: () => 3, queued: () => 0, maxWorkers: 6, warm: (id) => warm.includes(id) });
}

test("a new user's run goes to a fresh worker that has warmed, though a cold one comes first", () => {
  const a = affinity([3]);
  const workers = [worker(1), worker(2), worker(3)];
  expect(a.balancer(run('u'), workers)!.id).toBe(3);
  // Then its own worker, whatever else is free.
  expect(a.balancer(run('u'), workers)!.id).toBe(3);
});

test('no fresh worker has warmed: the first cold one, rather than waiting', () => {
  const a = affinity([]);
  expect(a.balancer(run('u'), [worker(1, 1), worker(2), worker(3)])!.id).toBe(2);
});
