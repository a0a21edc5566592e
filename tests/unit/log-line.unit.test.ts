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
  }
});

test('many keys, each small, are cut too', () => {
  const fields = Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`k${i}`, i]));
  const out = fitted({ ...ids, fields, msg: 'many' });
  expect(out.msg).toBe('many');
});
