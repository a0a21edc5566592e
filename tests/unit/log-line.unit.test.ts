/**
 * A worker's log line goes to the front's pipe in one write, whole only up to PIPE_BUF (4 KiB): a longer one (an
 * agent's ctx.log with large fields, or a long message) is made to fit, its ids kept, and says it was cut.
 */
import { fitLogLine, MAX_LOG_LINE_BYTES } from '../../workers/worker/log-line';

const ids = { level: 30, time: '2026-12-07T12:00:00.000Z', pid: 7, cell: 'c1', worker: 3, run_id: 'r1', user_id: 'u1', from: 'agent' };
const line = (entry: object) => `${JSON.stringify(entry)}\n`;
const fitted = (entry: object) => {
  const out = fitLogLine(line(entry));
  expect(Buffer.byteLength(out)).toBeLessThanOrEqual(MAX_LOG_LINE_BYTES);
  expect(out.endsWith('\n')).toBe(true);
  return JSON.parse(out) as Record<string, unknown>;
};

test('a line within 4 KiB is written as it is', () => {
  const l = line({ ...ids, fields: { a: 'x'.repeat(3000) }, msg: 'hi' });
  expect(fitLogLine(l)).toBe(l);
});

test('large fields are replaced by their size, largest first; the ids and the message stay', () => {
  const out = fitted({ ...ids, fields: { a: 'x'.repeat(10_000) }, note: 'small', msg: 'hello' });
  expect(out).toMatchObject({ ...ids, msg: 'hello', note: 'small', cut: true });
  expect(out.fields).toMatch(/^\[cut: \d+ bytes\]$/);
});

test('a long message is shortened to fit, counted as JSON escapes it', () => {
  for (const msg of ['m'.repeat(20_000), '\u0001'.repeat(5_000), '😀'.repeat(5_000)]) {
    const out = fitted({ ...ids, msg });
    expect(out).toMatchObject({ run_id: 'r1', user_id: 'u1', cut: true });
    expect((out.msg as string).endsWith('…')).toBe(true);
    expect((out.msg as string).length).toBeGreaterThan(100);
    // The longest prefix that fits: one character more (6 bytes as JSON at most) would not.
    expect(Buffer.byteLength(fitLogLine(line({ ...ids, msg })))).toBeGreaterThan(MAX_LOG_LINE_BYTES - 6);
  }
});

test('many keys, each small, are cut too', () => {
  const fields = Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`k${i}`, i]));
  const out = fitted({ ...ids, fields, msg: 'many' });
  expect(out.msg).toBe('many');
});

test.each(['time', 'cell', 'run_id', 'user_id', 'agent', 'from'])('the id %s is never cut, however long: the message is shortened instead', (id) => {
  const out = fitted({ ...ids, [id]: 'i'.repeat(1000), msg: 'm'.repeat(3500) });
  expect(out[id]).toBe('i'.repeat(1000));
  expect(out).toMatchObject({ cut: true, msg: expect.stringMatching(/^m+…$/) });
});

test('a line that is not JSON, or whose ids alone are too long, is replaced by a short line saying so', () => {
  const garbage = `${'x'.repeat(5000)}\n`;
  expect(JSON.parse(fitLogLine(garbage))).toMatchObject({ level: 50, msg: 'a log line that did not parse, cut', bytes: 5001 });
  const out = fitted({ ...ids, user_id: 'u'.repeat(5000), msg: 'hi' });
  expect(out).toMatchObject({ level: 50, msg: 'a log line too long to fit, cut' });
});
