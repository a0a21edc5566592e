/**
 * What a worker thread prints reaches the log within a budget (RUN_LOG_BYTES_PER_S): a run printing without pause
 * wrote 18 MB a second into the front's log (helper-93), the log of every user, the host's disk, and a cell's main
 * thread busy tagging it while its other runs waited on it.
 *
 * Node pipes each worker's stdout and stderr into the process's own (a Readable here, fed by the worker's port) as
 * the worker starts. Agent code owns everything on the worker's side of that port, so the budget is kept here: each
 * worker's streams are piped through a bucket of the run on it instead. What does not fit is dropped and counted,
 * and, while a run is on the worker, holds the stream a moment; the cell logs how much, naming the thread and its
 * run, at most about once a second per thread.
 */
import { Writable, type Readable } from 'node:stream';
import { isSharedArrayBuffer } from 'node:util/types';
import { createByteBucket, type ByteBucket } from '../../protocol/byte-bucket.js';
import { LOG_BURST_SECONDS } from '../../protocol/cell-messages.js';
import { RECORD_BYTES } from './worker-output.js';

/** A worker thread as Piscina lists it (pool.threads). */
interface Thread {
  readonly threadId: number;
  readonly stdout: Readable;
  readonly stderr: Readable;
}

interface Spending {
  bucket: ByteBucket;
  dropped: number;
  /** The last run started on the worker, whose budget `bucket` is (a report may come after its end). */
  runId: string | undefined;
  reporting: NodeJS.Timeout | null;
  /** Until when (performance.now()) what the run dropped so far holds its streams, at DROP_BYTES_PER_S (below). */
  holdUntil: number;
}

const REPORT_EVERY_MS = 1000;

/**
 * What a chunk a worker printed becomes in the log, each of its lines a record of the cell's (worker-output.ts): its
 * text as JSON writes it, and a record's bytes a line. Counted as its raw bytes, a run printing newlines alone wrote
 * 16.7 MB into the log within a budget of 168 KB (110 bytes a record for each byte of its), one printing control
 * characters (6 bytes each in JSON) 921 KB (tests/log-budget-edges.test.ts). A chunk over the budget's capacity is
 * dropped whatever it becomes, and not read.
 */
function logBytesOf(chunk: Buffer, capacity: number): number {
  if (chunk.length > capacity) return chunk.length;
  let lines = 0;
  for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) lines++;
  // A byte that is not UTF-8 is written as U+FFFD (3 bytes), as the tagging decodes it.
  return Buffer.byteLength(JSON.stringify(chunk.toString('utf8'))) - 2 + lines * RECORD_BYTES;
}
/**
 * What this thread receives, at most, of what a worker prints past its budget (raw bytes a second): each dropped
 * chunk holds the stream for as long as this rate takes to pass it (below).
 */
const DROP_BYTES_PER_S = 4 * 1024 * 1024;
/** The longest a dropped chunk holds its stream. */
const MAX_HOLD_MS = 1000;

export function budgetWorkerPrints(deps: {
  /** The process's stdout and stderr (tagged: worker-output.ts), into which Node pipes each worker's. */
  outputs: NodeJS.WritableStream[];
  bytesPerSecond: number;
  /** The workers alive; the one a stream belongs to is looked up as its first chunk arrives. */
  threads: () => readonly Thread[];
  /** The run a worker runs now, if any (named in the report). */
  runOn: (threadId: number) => string | undefined;
  report: (fields: { worker: number; run_id?: string; dropped_bytes: number }) => void;
}): void {
  if (deps.bytesPerSecond === 0) return;
  // Per worker (its stdout and stderr share it); weak: a worker gone takes its spending with it.
  const spendings = new WeakMap<object, Spending>();
  const capacity = deps.bytesPerSecond * LOG_BURST_SECONDS;
  const newBucket = () => createByteBucket(deps.bytesPerSecond, capacity);
  const spendingOf = (owner: object): Spending => {
    let s = spendings.get(owner);
    if (!s) spendings.set(owner, (s = { bucket: newBucket(), dropped: 0, runId: undefined, reporting: null, holdUntil: 0 }));
    return s;
  };
  const report = (s: Spending, threadId: number | undefined) => {
    if (s.dropped === 0) return;
    deps.report({ worker: threadId ?? -1, ...(s.runId ? { run_id: s.runId } : {}), dropped_bytes: s.dropped });
    s.dropped = 0;
  };
  for (const output of deps.outputs) {
    output.on('pipe', (source: Readable) => {
      source.unpipe(output);
      let owner: Thread | undefined;
      source.pipe(
        new Writable({
          write(printed: Buffer, _encoding, done) {
            // A chunk printed from a SharedArrayBuffer arrives as a view of memory the worker still writes: counted as
            // letters, it was written a moment later as so many newlines, a record each (helper-100: 16 times the
            // budget). What is counted and written is then a copy of this thread's own.
            const chunk = isSharedArrayBuffer(printed.buffer) ? Buffer.from(printed) : printed;
            owner ??= deps.threads().find((t) => t.stdout === source || t.stderr === source);
            const s = spendingOf(owner ?? source);
            const threadId = owner?.threadId;
            const running = threadId === undefined ? undefined : deps.runOn(threadId);
            // Each run on the worker has a budget of its own: kept per worker, a run that printed its burst left the
            // worker's next run (another user's, under THREAD_REUSE=any) an empty bucket, 1 of its 32 lines printed
            // within its own budget reached the log (tests/log-budget-reuse.test.ts). What the last run dropped is
            // reported under its id first.
            if (running !== undefined && running !== s.runId) {
              report(s, threadId);
              s.runId = running;
              s.bucket = newBucket();
              s.holdUntil = 0;
            }
            const bytes = logBytesOf(chunk, capacity);
            if (s.bucket.take(bytes)) {
              output.write(chunk, () => done());
              return;
            }
            s.dropped += chunk.length;
            if (!s.reporting) {
              report(s, threadId);
              s.reporting = setTimeout(() => {
                s.reporting = null;
                report(s, threadId);
              }, REPORT_EVERY_MS);
              s.reporting.unref();
            }
            // Dropped, and the stream held a moment: the worker's writes wait (Node answers them as this side reads),
            // so a run printing without pause past its budget is slowed to DROP_BYTES_PER_S rather than keep this
            // thread busy receiving what it drops (~115 MB a second, when dropped at once). Not to the budget itself:
            // held for as long as each chunk would take to fit, a run that awaited its writes took 8 to 30 s for 1 s
            // of printing (Node 20 to 24), its deadline spent on output nobody reads.
            // With no run on the worker (its run ended, the worker retired with it), nobody is left to slow down: what
            // is left was sent before the end, in one batch (the worker's writes queue while the stream is held, then
            // go out at once), and held at the budget's pace it stayed in this process, memory no run answers for,
            // long after the run (4 MiB at 8 KiB a second: minutes; tests/log-budget-edges.test.ts).
            if (running === undefined) return done();
            // Paced on one clock per worker (its stdout and stderr share it): each chunk's hold added to what is still
            // to come, so small chunks pay in bulk rather than a timer's millisecond each (80-byte lines drained at
            // ~69 KiB a second, helper-99), and what a chunk's hold is capped at is carried to the next ones.
            const now = performance.now();
            s.holdUntil = Math.max(s.holdUntil, now) + (chunk.length / DROP_BYTES_PER_S) * 1000;
            const wait = s.holdUntil - now;
            if (wait < 1) return done();
            setTimeout(done, Math.min(MAX_HOLD_MS, wait)).unref();
          },
        }),
      );
    });
  }
}
