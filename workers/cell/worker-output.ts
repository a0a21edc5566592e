/**
 * What workers print reaches the log as data, never as a line of its own.
 *
 * A worker thread's `console.log` and `process.stdout`/`stderr` writes arrive in the cell's main thread (Node pipes
 * them into the process's streams), and from there go to the front's output. Agent code decides what they say: a
 * printed `{"process":"front","msg":"run finished"}` would read like the front's own line. Each line of it is
 * written instead as a JSON line of the cell's that carries the text as a string (`"from":"output"`). Workers' own
 * log lines do not come this way (they write fd 1 themselves, workers/worker/fd-guards.ts), nor do the cell's (taken
 * before this), nor V8's fatal messages (written by C++ straight to fd 2, read by the front to name a cell's death).
 */

/**
 * Longer lines are cut into pieces of this many characters (a line without a newline must not grow forever), so that
 * a record of the cell's usually fits in one atomic write (below).
 */
export const MAX_OUTPUT_LINE = 3 * 1024;

/**
 * The cell's stdout is the front's (inherited): the front writes its own lines to the same pipe. A write to a pipe is
 * atomic only up to PIPE_BUF (4 KiB on Linux): a bigger one (a batch of printed lines, megabytes) was split by the
 * kernel, and a line the front wrote meanwhile landed inside one of the cell's, so that neither parsed (a run printing
 * without pause made the front's own lines vanish from a JSON log: tests/log-interleave.test.ts). So each write holds
 * whole records and at most this many bytes, and a record longer than that (a line whose characters JSON escapes, six
 * bytes each) is cut again.
 */
export const ATOMIC_WRITE_BYTES = 4096;

/**
 * The bytes a record adds to the line it carries (level, time, the cell's pid, from, stream, the quotes and the
 * newline: 110 with a 7-digit pid). What a worker prints is budgeted as what it becomes in the log (print-budget.ts).
 */
export const RECORD_BYTES = 110;

function cut(line: string): string[] {
  if (line.length <= MAX_OUTPUT_LINE) return [line];
  const pieces: string[] = [];
  for (let at = 0; at < line.length; at += MAX_OUTPUT_LINE) pieces.push(line.slice(at, at + MAX_OUTPUT_LINE));
  return pieces;
}

/** The records of one piece of a line, each at most ATOMIC_WRITE_BYTES (halved until they fit). */
function fit(piece: string, record: (line: string) => string): string[] {
  const r = record(piece);
  if (Buffer.byteLength(r) <= ATOMIC_WRITE_BYTES || piece.length < 2) return [r];
  const half = Math.ceil(piece.length / 2);
  return [...fit(piece.slice(0, half), record), ...fit(piece.slice(half), record)];
}

type Write = (chunk: string, callback?: (err?: Error | null) => void) => boolean;

export interface TaggedStream {
  write: NodeJS.WritableStream['write'];
}

/** Replaces `stream.write` with one that writes each line as `{"from":"output","stream":…,"line":…}`. */
export function tagOutput(stream: TaggedStream, name: 'stdout' | 'stderr', bindings: Record<string, unknown>): void {
  const write = stream.write.bind(stream) as Write;
  // A pipe the front does not drain at once takes part of a write (it is non-blocking: libuv makes it so): the stream
  // queues the rest and every write after it, and, given a `_writev`, hands them all to one writev later, which the
  // kernel cuts anywhere past PIPE_BUF, then writes on from inside a record. Without it each queued write goes to the
  // pipe alone, and one of at most PIPE_BUF bytes is taken whole or not at all (Node does the same for Windows pipes).
  if ('_writev' in stream) (stream as { _writev?: unknown })._writev = null;
  let partial = '';
  const record = (line: string) => `${JSON.stringify({ level: 30, time: new Date().toISOString(), ...bindings, from: 'output', stream: name, line })}\n`;
  stream.write = function writeTagged(chunk: unknown, encoding?: unknown, callback?: unknown): boolean {
    const done = (typeof encoding === 'function' ? encoding : callback) as ((err?: Error | null) => void) | undefined;
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8');
    const lines = (partial + text).split('\n');
    partial = lines.pop()!;
    while (partial.length >= MAX_OUTPUT_LINE) {
      lines.push(partial.slice(0, MAX_OUTPUT_LINE));
      partial = partial.slice(MAX_OUTPUT_LINE);
    }
    const records = lines.flatMap(cut).flatMap((piece) => fit(piece, record));
    if (records.length === 0) {
      if (done) process.nextTick(done);
      return true;
    }
    // Whole records, at most ATOMIC_WRITE_BYTES a write; the stream's backpressure (the last write's return value,
    // its callback) is the underlying one's.
    const writes: string[] = [];
    let batch = '';
    let bytes = 0;
    for (const r of records) {
      const n = Buffer.byteLength(r);
      if (batch && bytes + n > ATOMIC_WRITE_BYTES) {
        writes.push(batch);
        batch = '';
        bytes = 0;
      }
      batch += r;
      bytes += n;
    }
    writes.push(batch);
    for (let i = 0; i < writes.length - 1; i++) write(writes[i]!);
    return write(writes[writes.length - 1]!, done);
  } as TaggedStream['write'];
}
