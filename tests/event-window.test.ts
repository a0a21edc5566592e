/**
 * The window between a run's worker and its cell (EVENTS_IN_FLIGHT, workers/worker/run-emitter.ts), with real
 * threads: a worker thread's emitter floods a real MessagePort while this thread, playing the cell, does not read
 * (its event loop held, as a cell's is while it checks another run's events). Node hands a port's queued messages to
 * the cell all at once, so whatever the flood posted meanwhile is ahead of every other run's message in the cell:
 * without the window all 256 events, with it EVENTS_IN_FLIGHT. The rest follow, in order, as the cell reads, and the
 * worker's `drained()` (which the run's `done` waits for) resolves only after the last.
 */
import path from 'node:path';
import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads';
import { EVENTS_IN_FLIGHT } from '../protocol/worker-messages';
import { ROOT } from './helpers/server';

const EVENTS = 256;

test('a flood has at most EVENTS_IN_FLIGHT events on the port while its cell does not read; the rest come in order as it reads, then the end', async () => {
  const { port1: cellSide, port2: runSide } = new MessageChannel();
  const eventsTaken = new Int32Array(new SharedArrayBuffer(4));
  const emitted = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(
    `const { workerData } = require('node:worker_threads');
     const { createRunEmitter } = require(${JSON.stringify(path.join(ROOT, 'dist/workers/worker/run-emitter.js'))});
     const { port, eventsTaken, emitted, events } = workerData;
     const limits = { maxEventsPerRun: 10000, maxEventBytes: 65536, maxRunEventBytes: 16777216, maxResultBytes: 1000 };
     const emitter = createRunEmitter(port, limits, () => {}, eventsTaken);
     const text = 'x'.repeat(60000);
     for (let i = 0; i < events; i++) emitter.emit('agent_thinking', { reasoning: i + ':' + text });
     Atomics.store(emitted, 0, 1);
     Atomics.notify(emitted, 0);
     // A pool's worker stays alive between messages (Piscina's port); this one by a timer: Atomics.waitAsync,
     // which the emitter waits with, keeps no event loop alive.
     const alive = setInterval(() => {}, 1000);
     emitter.drained().then(() => { port.postMessage({ type: 'end' }); clearInterval(alive); });`,
    { eval: true, workerData: { port: runSide, eventsTaken, emitted, events: EVENTS }, transferList: [runSide] },
  );
  try {
    // Not reading (this thread blocked) until the worker has emitted everything, then what the port holds.
    expect(Atomics.wait(emitted, 0, 0, 30_000)).not.toBe('timed-out');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200); // anything it still posts, it posts now
    const read: string[] = [];
    // Takes what the port holds, then tells the worker (which may post again at once, on its thread).
    const drain = () => {
      let events = 0;
      for (let m = receiveMessageOnPort(cellSide); m; m = receiveMessageOnPort(cellSide)) {
        const msg = m.message as { type: string; event?: { payload: { reasoning: string } } };
        read.push(msg.type === 'event' ? msg.event!.payload.reasoning.split(':')[0] : msg.type);
        if (msg.type === 'event') events++;
      }
      return () => {
        Atomics.add(eventsTaken, 0, events);
        Atomics.notify(eventsTaken, 0);
      };
    };
    const told = drain();
    expect(read).toHaveLength(EVENTS_IN_FLIGHT);
    told();
    // Reading as a cell does: each read lets the worker post one more.
    const deadline = Date.now() + 30_000;
    while (read.at(-1) !== 'end' && Date.now() < deadline) {
      drain()();
      await new Promise((r) => setTimeout(r, 1));
    }
    expect(read).toEqual([...Array.from({ length: EVENTS }, (_, i) => String(i)), 'end']);
  } finally {
    await worker.terminate();
    cellSide.close();
  }
});
