/**
 * A cell's workers warm up one at a time (workers/worker/warm-up-turn.ts), across real threads sharing the lock:
 * each worker records when its warm-up began and ended, and no two overlap.
 */
import { Worker } from 'node:worker_threads';
import path from 'node:path';
import { firstWarmWorker, takeWarmUpTurn, warmWorkers } from '../../workers/worker/warm-up-turn';

const TURN = path.join(__dirname, '../../workers/worker/warm-up-turn.js');

/** A thread that takes the turn, keeps a core busy `busyMs` (a warm-up), and reports [start, end]. */
function warmer(lock: Int32Array, busyMs: number): Promise<[number, number]> {
  const source = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { takeWarmUpTurn } = require(${JSON.stringify(TURN)});
    (async () => {
      const release = await takeWarmUpTurn(workerData.lock, 60000);
      const start = performance.timeOrigin + performance.now();
      while (performance.timeOrigin + performance.now() < start + workerData.busyMs);
      const end = performance.timeOrigin + performance.now();
      release();
      parentPort.postMessage([start, end]);
    })();`;
  const w = new Worker(source, { eval: true, workerData: { lock, busyMs } });
  return new Promise((resolve, reject) => {
    w.once('message', (m: [number, number]) => {
      void w.terminate();
      resolve(m);
    });
    w.once('error', reject);
  });
}

test('four threads started together warm up one after another, never two at once', async () => {
  const lock = new Int32Array(new SharedArrayBuffer(4));
  const spans = (await Promise.all([0, 1, 2, 3].map(() => warmer(lock, 50)))).sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) expect(spans[i]![0]).toBeGreaterThanOrEqual(spans[i - 1]![1]);
  expect(lock[0]).toBe(0);
});

test('a turn never released (its holder died warming) holds the others back at most maxWaitMs', async () => {
  const lock = new Int32Array(new SharedArrayBuffer(4));
  const held = await takeWarmUpTurn(lock, 1000);
  expect(lock[0]).toBe(1);
  const t0 = Date.now();
  const release = await takeWarmUpTurn(lock, 300);
  expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
  // Warming without the turn, it must not free the turn someone else holds.
  release();
  expect(lock[0]).toBe(1);
  held();
  expect(lock[0]).toBe(0);
});

test('a released turn goes to the one waiting, at once', async () => {
  const lock = new Int32Array(new SharedArrayBuffer(4));
  const first = await takeWarmUpTurn(lock, 60_000);
  let second = false;
  const waiting = takeWarmUpTurn(lock, 60_000).then((release) => ((second = true), release));
  await new Promise((r) => setTimeout(r, 50));
  expect(second).toBe(false);
  first();
  (await waiting)();
  expect(second).toBe(true);
  expect(lock[0]).toBe(0);
});

/** A thread that notes itself warm after `afterMs`, and answers its threadId. */
function noting(lock: Int32Array, afterMs: number): Promise<number> {
  const source = `
    const { parentPort, workerData, threadId } = require('node:worker_threads');
    const { noteWarm } = require(${JSON.stringify(TURN)});
    setTimeout(() => { noteWarm(workerData.lock, threadId); parentPort.postMessage(threadId); }, workerData.afterMs);`;
  const w = new Worker(source, { eval: true, workerData: { lock, afterMs } });
  return new Promise((resolve, reject) => {
    w.once('message', (id: number) => {
      void w.terminate();
      resolve(id);
    });
    w.once('error', reject);
  });
}

test('the cell learns which worker warmed first, from another thread, as it happens, and the others in order', async () => {
  const lock = new Int32Array(new SharedArrayBuffer(4 * 4));
  const first = firstWarmWorker(lock, 60_000);
  const [early, late] = await Promise.all([noting(lock, 50), noting(lock, 400)]);
  expect(await first).toBe(early);
  expect(warmWorkers(lock)).toEqual([early, late]);
  expect(late).not.toBe(early);
});

test('workers beyond the list are not listed, and take no one’s place', async () => {
  const lock = new Int32Array(new SharedArrayBuffer(4 * 2));
  const early = await noting(lock, 0);
  await noting(lock, 0);
  expect(warmWorkers(lock)).toEqual([early]);
  expect(lock[0]).toBe(0);
});

test('no worker warms: the cell stops waiting after maxWaitMs', async () => {
  const t0 = Date.now();
  expect(await firstWarmWorker(new Int32Array(new SharedArrayBuffer(8)), 200)).toBeNull();
  expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
});
