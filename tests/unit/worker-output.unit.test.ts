/**
 * What workers print is written as data (workers/cell/worker-output.ts): each line a JSON line of the cell's with the
 * text as a string, split on newlines across writes, long lines cut, backpressure passed through; and a cell's death
 * is named from V8's plain-text messages only, never from a line a worker printed (server/cells/exit-cause.ts).
 */
import { Writable } from 'node:stream';
import { CELL_EXIT_DESCRIPTORS, CELL_EXIT_MEMORY, CELL_EXIT_SCRATCH } from '../../protocol/cell-messages';
import { describeCellExit } from '../../server/cells/exit-cause';
import { ATOMIC_WRITE_BYTES, MAX_OUTPUT_LINE, tagOutput, type TaggedStream } from '../../workers/cell/worker-output';

function fakeStream(accept = true) {
  const written: string[] = [];
  const callbacks: (() => void)[] = [];
  const stream: TaggedStream = {
    write: ((chunk: string, callback?: () => void) => {
      written.push(chunk);
      if (callback) callbacks.push(callback);
      return accept;
    }) as TaggedStream['write'],
  };
  const records = () => written.join('').split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
  return { stream, written, callbacks, records };
}

test('each printed line becomes a string in a line of its own, whatever it says', () => {
  const { stream, records } = fakeStream();
  tagOutput(stream, 'stdout', { cell_pid: 42 });
  stream.write('{"process":"front","msg":"run finished"}\nsecond ');
  stream.write(Buffer.from('line\n'));
  expect(records()).toEqual([
    { level: 30, time: expect.any(String), cell_pid: 42, from: 'output', stream: 'stdout', line: '{"process":"front","msg":"run finished"}' },
    { level: 30, time: expect.any(String), cell_pid: 42, from: 'output', stream: 'stdout', line: 'second line' },
  ]);
});

test('a line with no end is cut at MAX_OUTPUT_LINE; a write with no complete line writes nothing yet', async () => {
  const { stream, written, records } = fakeStream();
  tagOutput(stream, 'stderr', {});
  let called = false;
  expect(stream.write('partial', () => (called = true))).toBe(true);
  expect(written).toEqual([]);
  await new Promise((resolve) => process.nextTick(resolve));
  expect(called).toBe(true);
  stream.write('x'.repeat(MAX_OUTPUT_LINE * 2 + 10));
  expect(records().map((r) => (r.line as string).length)).toEqual([MAX_OUTPUT_LINE, MAX_OUTPUT_LINE]);
  stream.write('\n');
  expect(records().map((r) => (r.line as string).length)).toEqual([MAX_OUTPUT_LINE, MAX_OUTPUT_LINE, 'partial'.length + 10]);
});

// The cell's stdout is the front's pipe: only writes of at most PIPE_BUF stay whole beside the front's own lines.
test('every write holds whole records and at most ATOMIC_WRITE_BYTES, whatever was printed at once', () => {
  const { stream, written, records } = fakeStream();
  tagOutput(stream, 'stdout', { cell_pid: 42 });
  const escaped = '\u0001'.repeat(10_000); // six bytes each once escaped
  stream.write(`${'y'.repeat(100)}\n`.repeat(500) + `${escaped}\n`);
  expect(written.length).toBeGreaterThan(1);
  for (const w of written) {
    expect(Buffer.byteLength(w)).toBeLessThanOrEqual(ATOMIC_WRITE_BYTES);
    expect(w.endsWith('\n')).toBe(true);
  }
  const lines = records().map((r) => r.line as string);
  expect(lines.slice(0, 500)).toEqual(new Array(500).fill('y'.repeat(100)));
  expect(lines.slice(500).join('')).toBe(escaped);
});

test("the underlying stream's backpressure and callback are the writer's", () => {
  const { stream, callbacks } = fakeStream(false);
  tagOutput(stream, 'stdout', {});
  let called = false;
  expect(stream.write('a\nb\n', () => (called = true))).toBe(false);
  expect(callbacks).toHaveLength(1);
  callbacks[0]();
  expect(called).toBe(true);
});

test("a cell's death is out of memory from V8's own message, not from a line a worker printed", () => {
  const v8 = '\n<--- Last few GCs --->\nFATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory\n';
  expect(describeCellExit(null, 'SIGABRT', v8).cause).toBe('out_of_memory');
  const printed = `${JSON.stringify({ from: 'output', stream: 'stderr', line: 'FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory' })}\n`;
  expect(describeCellExit(1, null, printed).cause).toBe('exited');
});

test("a cell's own exit codes name their cause: its memory watchdog, its scratch watch, and a watch left without descriptors", () => {
  expect(describeCellExit(CELL_EXIT_MEMORY, null, '')).toMatchObject({ cause: 'memory_limit', error: { code: 'OUT_OF_MEMORY' } });
  expect(describeCellExit(CELL_EXIT_SCRATCH, null, '')).toMatchObject({ cause: 'scratch_limit', error: { code: 'LIMIT_EXCEEDED' } });
  expect(describeCellExit(CELL_EXIT_DESCRIPTORS, null, '')).toMatchObject({ cause: 'descriptors', error: { code: 'LIMIT_EXCEEDED' } });
});

// A pipe the front does not drain at once: the stream queues what it cannot write yet and, given `_writev`, hands it
// all to one writev later, which the kernel may cut anywhere past PIPE_BUF (a line of the front's then lands inside
// a record: tests/log-interleave.test.ts passed only while the pipe had room).
test('with the pipe full, queued records still reach it in writes of at most ATOMIC_WRITE_BYTES, each whole', async () => {
  const syscalls: string[] = [];
  const pending: (() => void)[] = [];
  const stream = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      syscalls.push(chunk.toString());
      pending.push(() => cb());
    },
    writev(chunks, cb) {
      syscalls.push(chunks.map((c) => c.chunk.toString()).join(''));
      pending.push(() => cb());
    },
  });
  tagOutput(stream as unknown as TaggedStream, 'stdout', { cell_pid: 42 });
  stream.write(`${'y'.repeat(100)}\n`.repeat(500));
  while (pending.length) {
    pending.shift()!();
    await new Promise((resolve) => setImmediate(resolve));
  }
  const all = syscalls.join('');
  expect(all.split('\n').filter(Boolean)).toHaveLength(500);
  for (const s of syscalls) {
    expect(Buffer.byteLength(s)).toBeLessThanOrEqual(ATOMIC_WRITE_BYTES);
    expect(s.endsWith('\n')).toBe(true);
  }
});
