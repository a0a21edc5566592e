/**
 * One worker of a cell warms up at a time. A cell starts several workers at once (its capacity and a warm
 * spare); warming together on few cores they all become ready late, together, and the cell with them. In
 * turns, the first is ready after one worker's warm-up and the cell serves while the others warm (measured
 * at start-up: see README, "Performance"). The cell gives every worker the same Int32s in a SharedArrayBuffer: [0]
 * the lock (0 free, 1 taken), then the threadIds of the workers that finished warming, in that order (0: none
 * yet; workers beyond the array's length are not listed). The cell's describe goes to the first, and runs to
 * listed workers first (workers/cell/warm-first.ts).
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

/** The worker has warmed: listed after those that warmed before it. */
export function noteWarm(lock: Int32Array, threadId: number): void {
  for (let i = 1; i < lock.length; i++) {
    if (Atomics.compareExchange(lock, i, 0, threadId) === 0) {
      Atomics.notify(lock, i);
      return;
    }
  }
}

/** The workers listed warm so far. */
export function warmWorkers(lock: Int32Array): number[] {
  const ids: number[] = [];
  for (let i = 1; i < lock.length; i++) {
    const id = Atomics.load(lock, i);
    if (id === 0) break;
    ids.push(id);
  }
  return ids;
}

/** The threadId of the first worker that warmed; null if none has after `maxWaitMs`. */
export async function firstWarmWorker(lock: Int32Array, maxWaitMs: number): Promise<number | null> {
  const deadline = Date.now() + maxWaitMs;
  for (;;) {
    const warm = Atomics.load(lock, 1);
    if (warm !== 0) return warm;
    const left = deadline - Date.now();
    if (left <= 0) return null;
    const { async, value } = (Atomics as unknown as AtomicsWaitAsync).waitAsync(lock, 1, 0, left);
    if (!async) continue;
    const alive = setTimeout(() => undefined, left);
    await value;
    clearTimeout(alive);
  }
}
