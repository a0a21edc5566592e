/**
 * What a cell sends the front, shared fairly between its workers.
 *
 * One IPC channel carries every run of the cell. Sent first come, first served (protocol/ipc-batch.ts), a run
 * emitting as fast as its caps allow (MAX_RUN_EVENT_BYTES: 16 MiB, three runs of the user at once) filled the
 * channel faster than the front could read it, and another user's event in the same cell waited behind all of it:
 * p50 0.3-0.7 s instead of 2 ms (measured ad hoc: README, threat model; tests/event-fairness.test.ts checks the
 * order). Here one batch at most is in the channel at a time,
 * and each batch is made of turns: every worker with something to send adds up to SHARE_BYTES of it, round robin,
 * until the batch holds BATCH_BYTES. A message sent now waits for the batch in the channel and its worker's turn,
 * not for what other workers queued before it.
 *
 * Order: a worker's messages keep their order (a run's start, events and end; its next run's after them; the
 * worker's end, `worker_gone`, last), since the front's bookkeeping of a cell's workers reads them in that order.
 * Messages of no worker (the cell's own: ready, stats, metrics, memory) go first in the next batch: none of them
 * is about a run, and none is large.
 */
import type { CellToFront } from '../../protocol/cell-messages.js';

/** What one worker's turn may add to a batch, in bytes of payload (a larger message goes alone in its turn). */
export const SHARE_BYTES = 16 * 1024;
/** A batch takes turns until it holds this much. */
export const BATCH_BYTES = 64 * 1024;
/** What a message of no payload counts for: a flood of small messages takes turns too. */
const MESSAGE_BYTES = 64;

/**
 * A db_query's size, which no caller measures: up to MAX_SQL_CHARS of statement and MAX_ARGS arguments of 64 Ki
 * characters (4 MiB), as many as the run's code sends. Counted as MESSAGE_BYTES, one turn held 256 of them (a batch of
 * 4 MiB to 1 GiB ahead of every other worker's messages).
 */
function queryBytes(query: { sql: string; args: unknown[] }): number {
  let bytes = query.sql.length;
  for (const a of query.args) bytes += typeof a === 'string' ? a.length : 8;
  return bytes;
}

export interface FairOutbox {
  /** `bytes`: the message's payload (an event's, as the cell measured it). `written`: once it is in the channel. */
  send(msg: CellToFront, written?: () => void, bytes?: number): void;
  /** Sends the next batch now, unless one is still in the channel (then as soon as it is taken). */
  flush(): void;
  /** Everything left, in one batch, now: the cell is about to exit. */
  drain(): void;
}

/** Writes one batch; `done` once it is in the channel (with an error if it could not be). */
export type OutboxWrite = (batch: CellToFront[], done: (err?: Error | null) => void) => void;

interface Entry {
  msg: CellToFront;
  written: (() => void) | undefined;
  bytes: number;
}

/** A queue that takes from its head without copying the rest (a flood of small messages queues thousands). */
class Queue {
  private items: (Entry | undefined)[] = [];
  private head = 0;
  get size(): number {
    return this.items.length - this.head;
  }
  push(e: Entry): void {
    this.items.push(e);
  }
  shift(): Entry {
    const e = this.items[this.head]!;
    // Not kept until the next compaction: a busy lane held up to 1024 sent messages or half its queue (64 MiB of events and more).
    this.items[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return e;
  }
}

export function createFairOutbox(write: OutboxWrite, limits: { shareBytes?: number; batchBytes?: number } = {}): FairOutbox {
  const shareBytes = limits.shareBytes ?? SHARE_BYTES;
  const batchBytes = limits.batchBytes ?? BATCH_BYTES;
  const cellLane = new Queue();
  /** One lane per worker, in turn order: a worker that had its turn goes to the end. */
  const lanes = new Map<number, Queue>();
  /** The worker each started run is on (its `run_started`), until its `run_finished` is queued. */
  const workerOf = new Map<string, number>();
  let inChannel = false;
  let scheduled: NodeJS.Immediate | null = null;

  function laneOf(msg: CellToFront): number | null {
    switch (msg.type) {
      case 'run_started':
        workerOf.set(msg.runId, msg.workerId);
        return msg.workerId;
      case 'run_finished': {
        const worker = workerOf.get(msg.runId);
        workerOf.delete(msg.runId);
        return worker ?? null; // a run that never started has nothing queued before its end
      }
      case 'run_event':
      case 'db_query':
      case 'model_call':
        return workerOf.get(msg.runId) ?? null;
      case 'worker_gone':
        return msg.workerId;
      default:
        return null;
    }
  }

  function take(from: Queue, into: Entry[], budget: number): number {
    let taken = 0;
    while (from.size > 0 && taken < budget) {
      const e = from.shift();
      into.push(e);
      taken += e.bytes;
    }
    return taken;
  }

  function nextBatch(all: boolean): Entry[] {
    const batch: Entry[] = [];
    take(cellLane, batch, Infinity);
    let size = 0;
    while (lanes.size > 0 && (all || size < batchBytes)) {
      for (const [worker, lane] of [...lanes]) {
        size += take(lane, batch, all ? Infinity : shareBytes);
        lanes.delete(worker);
        if (lane.size > 0) lanes.set(worker, lane);
        if (!all && size >= batchBytes) break;
      }
    }
    return batch;
  }

  function pump(all = false): void {
    if (scheduled) clearImmediate(scheduled);
    scheduled = null;
    if (inChannel && !all) return;
    const batch = nextBatch(all);
    if (batch.length === 0) return;
    inChannel = true;
    write(
      batch.map((e) => e.msg),
      (err) => {
        inChannel = false;
        if (!err) for (const e of batch) e.written?.();
        if (cellLane.size > 0 || lanes.size > 0) scheduled ??= setImmediate(pump);
      },
    );
  }

  return {
    send(msg, written, bytes = msg.type === 'db_query' ? queryBytes(msg.query) : MESSAGE_BYTES) {
      const worker = laneOf(msg);
      const entry: Entry = { msg, written, bytes: Math.max(bytes, MESSAGE_BYTES) };
      if (worker === null) cellLane.push(entry);
      else {
        let lane = lanes.get(worker);
        if (!lane) lanes.set(worker, (lane = new Queue()));
        lane.push(entry);
      }
      if (!inChannel) scheduled ??= setImmediate(pump);
    },
    flush: () => pump(),
    drain: () => pump(true),
  };
}
