/**
 * Front ↔ cell messages travel in batches: everything one side sends in a turn of its event loop goes as
 * one IPC message (an array) at the next setImmediate. A process.send costs a serialization and a pipe
 * write each; a busy cell sends four or five per run, so batching saves both sides most of that work.
 * Order is kept. `flush` sends at once: a cell calls it before it exits on purpose.
 */
export interface BatchedSender<T> {
  send(msg: T): void;
  flush(): void;
}

export function createBatchedSender<T>(write: (batch: T[]) => void): BatchedSender<T> {
  let batch: T[] = [];
  let scheduled: NodeJS.Immediate | null = null;
  function flush(): void {
    if (scheduled) clearImmediate(scheduled);
    scheduled = null;
    if (batch.length === 0) return;
    const out = batch;
    batch = [];
    write(out);
  }
  return {
    send(msg: T): void {
      batch.push(msg);
      scheduled ??= setImmediate(flush);
    },
    flush,
  };
}
