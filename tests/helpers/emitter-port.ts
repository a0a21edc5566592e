/**
 * A stand-in for a run's port as ctx.emit posts on it (workers/worker/run-emitter.ts): the cell side reads each
 * message at once, counting the events it read in `eventsTaken` as the real cell does (workers/cell/run-dispatcher.ts).
 */
export function portReadAtOnce(onMessage: (msg: any) => void): { port: never; eventsTaken: Int32Array } {
  const eventsTaken = new Int32Array(new SharedArrayBuffer(4));
  const port = {
    postMessage(msg: any) {
      if (msg?.type === 'event') Atomics.add(eventsTaken, 0, 1);
      onMessage(msg);
    },
  };
  return { port: port as never, eventsTaken };
}
