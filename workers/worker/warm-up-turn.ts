/**
 * One worker of a cell warms up at a time. A cell starts several workers at once (its capacity and a warm
 * spare); warming together on few cores they all become ready late, together, and the cell with them. In
 * turns, the first is ready after one worker's warm-up and the cell serves while the others warm (measured
 * at start-up: see README, "Performance"). The lock is an Int32 in a SharedArrayBuffer the cell gives every
 * worker: 0 free, 1 taken.
 */

/**
 * Waits for the cell's warm-up turn; resolves with its release. A worker killed while warming never releases
 * it: the others wait at most `maxWaitMs`, then warm anyway.
 */
export async function takeWarmUpTurn(lock: Int32Array, maxWaitMs: number): Promise<() => void> {
  const deadline = Date.now() + maxWaitMs;
  while (Atomics.compareExchange(lock, 0, 0, 1) !== 0) {
    const left = deadline - Date.now();
    if (left <= 0) return () => undefined;
    // Atomics.waitAsync: in every Node this project supports, not yet in TypeScript's ES2022 library.
    const { async, value } = (Atomics as unknown as AtomicsWaitAsync).waitAsync(lock, 0, 1, left);
    if (!async) continue;
    // A pending waitAsync does not keep a thread's event loop alive: this timer does, while it waits.
    const alive = setTimeout(() => undefined, left);
    await value;
    clearTimeout(alive);
  }
  return () => {
    Atomics.store(lock, 0, 0);
    Atomics.notify(lock, 0, 1);
  };
}

interface AtomicsWaitAsync {
  waitAsync(array: Int32Array, index: number, value: number, timeoutMs: number): { async: false; value: string } | { async: true; value: Promise<string> };
}
