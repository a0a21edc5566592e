/**
 * Front ↔ cell messages travel in batches: everything one side sends in a turn of its event loop goes as
 * one IPC message (an array) at the next setImmediate. A process.send costs a serialization and a pipe
 * write each; a busy cell sends four or five per run, so batching saves both sides most of that work.
 * Order is kept. `flush` sends at once. The front sends its cells this way; a cell sends the front through
 * workers/cell/fair-outbox.ts, which batches the same way but takes turns between its workers. The Redis event bus batches
 * its PUBLISHes per turn the same way (server/bus/redis/redis-bus.ts).
 */
export interface BatchedSender<T> {
  /** `written`: called once the batch holding `msg` is handed to the channel (never, if that write failed). */
  send(msg: T, written?: () => void): void;
  flush(): void;
}

/** Writes one batch; calls `done` once it is handed to the channel (the OS pipe), with an error if it was not. */
export type BatchWrite<T> = (batch: T[], done: (err?: Error | null) => void) => void;

export function createBatchedSender<T>(write: BatchWrite<T>): BatchedSender<T> {
  let batch: T[] = [];
  let waiting: (() => void)[] = [];
  let scheduled: NodeJS.Immediate | null = null;
  function flush(): void {
    if (scheduled) clearImmediate(scheduled);
    scheduled = null;
    if (batch.length === 0) return;
    const out = batch;
    const callbacks = waiting;
    batch = [];
    waiting = [];
    write(out, (err) => {
      if (!err) for (const cb of callbacks) cb();
    });
  }
  return {
    send(msg: T, written?: () => void): void {
      batch.push(msg);
      if (written) waiting.push(written);
      scheduled ??= setImmediate(flush);
    },
    flush,
  };
}
