/**
 * ctx.emit's stream merging, with a fake clock: a tight loop of partial results reaches the cell as a few
 * events holding every text in order, nothing waits longer than one interval, other events keep their
 * place, and no merged event is over MAX_EVENT_BYTES.
 */
import { createRunEmitter, STREAM_INTERVAL_MS } from '../workers/worker/run-emitter';
import { portReadAtOnce } from './helpers/emitter-port';

const LIMITS = { maxEventsPerRun: 100_000, maxEventBytes: 2000, maxResultBytes: 10_000 } as never;

function rig() {
  const posted: { type: string; payload: any }[] = [];
  const { port, eventsTaken } = portReadAtOnce((m) => posted.push(m.event));
  return { posted, emitter: createRunEmitter(port, LIMITS, () => undefined, eventsTaken) };
}

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

test('a tight loop of partial results goes out as a few events, every text in order, within one interval', () => {
  const { posted, emitter } = rig();
  const texts = Array.from({ length: 1000 }, (_, i) => `t${i} `);
  for (const t of texts) emitter.emit('partial_result', { text: t });
  // The first at once; before the interval ends, only merged events that reached the size cap.
  const early = posted.length;
  for (const e of posted.slice(1)) expect(Buffer.byteLength(JSON.stringify(e.payload))).toBeGreaterThan(1900);
  jest.advanceTimersByTime(STREAM_INTERVAL_MS);
  expect(posted.length).toBe(early + 1);
  expect(posted.length).toBeGreaterThan(1);
  expect(posted.length).toBeLessThan(10);
  expect(posted.map((e) => e.payload.text).join('')).toBe(texts.join(''));
  for (const e of posted) expect(Buffer.byteLength(JSON.stringify(e.payload))).toBeLessThanOrEqual(2000);
});

test('events spaced wider than the interval each go out at once', () => {
  const { posted, emitter } = rig();
  for (let i = 0; i < 5; i++) {
    emitter.emit('partial_result', { text: `p${i}` });
    expect(posted).toHaveLength(i + 1);
    jest.advanceTimersByTime(STREAM_INTERVAL_MS);
  }
});

test('another event type sends what is merged first, so the order is kept; release sends the rest', () => {
  const { posted, emitter } = rig();
  emitter.emit('partial_result', { text: 'a' });
  emitter.emit('partial_result', { text: 'b' });
  emitter.emit('partial_result', { text: 'c' });
  emitter.emit('tool_executing', { tool_call_id: '1', tool_name: 'x', parameters: {} });
  emitter.emit('partial_result', { text: 'd' });
  emitter.emit('partial_result', { text: 'e' });
  emitter.release();
  expect(posted.map((e) => [e.type, e.payload.text ?? null])).toEqual([
    ['partial_result', 'a'],
    ['partial_result', 'bc'],
    ['tool_executing', null],
    ['partial_result', 'de'],
  ]);
  expect(jest.getTimerCount()).toBe(0); // nothing left behind for the leak check to find
});

test('a partial result with fields besides text is never merged', () => {
  const { posted, emitter } = rig();
  emitter.emit('partial_result', { text: 'a' });
  emitter.emit('partial_result', { text: 'b', index: 2 });
  emitter.emit('partial_result', { text: 'c' });
  jest.advanceTimersByTime(STREAM_INTERVAL_MS);
  expect(posted.map((e) => e.payload)).toEqual([{ text: 'a' }, { text: 'b', index: 2 }, { text: 'c' }]);
});
