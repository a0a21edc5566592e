/** The in-process idempotency map: a duplicate arriving while the first is being accepted gets its answer. */
import { createAccepting } from '../../server/shared/in-process/accepting';

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

test('a duplicate waits for the first acceptance and gets its value, marked duplicate; accept runs once', async () => {
  const accepting = createAccepting();
  const gate = deferred<string>();
  let calls = 0;
  const accept = () => {
    calls++;
    return gate.promise;
  };
  const first = accepting.once('k', accept);
  const second = accepting.once('k', accept);
  const other = accepting.once('other', async () => 'x');
  gate.resolve('run-1');
  expect(await first).toEqual({ value: 'run-1', duplicate: false });
  expect(await second).toEqual({ value: 'run-1', duplicate: true });
  expect(await other).toEqual({ value: 'x', duplicate: false });
  expect(calls).toBe(1);
});

test('once the first is answered, the key is free: the next request is accepted anew', async () => {
  const accepting = createAccepting();
  expect(await accepting.once('k', async () => 1)).toEqual({ value: 1, duplicate: false });
  expect(await accepting.once('k', async () => 2)).toEqual({ value: 2, duplicate: false });
});

test('a failed acceptance fails its duplicates too, and frees the key', async () => {
  const accepting = createAccepting();
  const gate = deferred<number>();
  const first = accepting.once('k', () => gate.promise);
  const second = accepting.once('k', async () => 99);
  gate.reject(new Error('disk full'));
  await expect(first).rejects.toThrow('disk full');
  await expect(second).rejects.toThrow('disk full');
  expect(await accepting.once('k', async () => 3)).toEqual({ value: 3, duplicate: false });
});
