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

/** Longer lines are cut into pieces of this many characters (a line without a newline must not grow forever). */
export const MAX_OUTPUT_LINE = 16 * 1024;

function cut(line: string): string[] {
  if (line.length <= MAX_OUTPUT_LINE) return [line];
  const pieces: string[] = [];
  for (let at = 0; at < line.length; at += MAX_OUTPUT_LINE) pieces.push(line.slice(at, at + MAX_OUTPUT_LINE));
  return pieces;
}

type Write = (chunk: string, callback?: (err?: Error | null) => void) => boolean;

export interface TaggedStream {
  write: NodeJS.WritableStream['write'];
}

/** Replaces `stream.write` with one that writes each line as `{"from":"output","stream":…,"line":…}`. */
export function tagOutput(stream: TaggedStream, name: 'stdout' | 'stderr', bindings: Record<string, unknown>): void {
  const write = stream.write.bind(stream) as Write;
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
    const pieces = lines.flatMap(cut);
    if (pieces.length === 0) {
      if (done) process.nextTick(done);
      return true;
    }
    // One write: the stream's backpressure (its return value, its callback) is the underlying one's.
    return write(pieces.map(record).join(''), done);
  } as TaggedStream['write'];
}
