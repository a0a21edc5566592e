/**
 * ctx.emit's checks and caps with a fake port and fake timers: the closed list of event types and payload
 * shapes, MAX_EVENT_BYTES and MAX_EVENTS_PER_RUN (reported once, sticky), release, and the stream merge
 * boundaries (the interval, the size cap, the clock flush).
 */
import { createRunEmitter, LimitExceededError, STREAM_INTERVAL_MS } from '../../workers/worker/run-emitter';
import { EVENTS_IN_FLIGHT } from '../../protocol/worker-messages';
import { MAX_OUTPUT_DEPTH } from '../../protocol/json-nesting';
import { portReadAtOnce } from '../helpers/emitter-port';

function rig(limits: { maxEventsPerRun?: number; maxEventBytes?: number; maxRunEventBytes?: number } = {}) {
  const posted: { type: string; payload: any; timestamp: number }[] = [];
  const violations: LimitExceededError[] = [];
  const { port, eventsTaken } = portReadAtOnce((m) => (expect(m.type).toBe('event'), posted.push(m.event)));
  const full = { maxEventsPerRun: 1000, maxEventBytes: 1000, maxRunEventBytes: 1_000_000, maxResultBytes: 10_000, ...limits } as never;
  return { posted, violations, emitter: createRunEmitter(port, full, (err) => violations.push(err), eventsTaken) };
}

const TOOL = { tool_call_id: '1', tool_name: 'x', parameters: { a: 1 } };
const DONE = { tool_call_id: '1', tool_name: 'x', status: 'success', results: [1], execution_time_ms: 3 };

beforeEach(() => {
  jest.useFakeTimers();
  jest.setSystemTime(1_000_000);
});
afterEach(() => jest.useRealTimers());

describe('event types and shapes', () => {
  test('every agent event type with a valid payload is posted as checked JSON, stamped now', () => {
    const { posted, emitter } = rig();
    emitter.emit('agent_thinking', { reasoning: 'hm' });
    emitter.emit('tool_executing', TOOL);
    emitter.emit('tool_completed', DONE);
    emitter.emit('tool_completed', { ...DONE, status: 'error' });
    emitter.emit('partial_result', { text: 'hi' });
    expect(posted).toEqual([
      { type: 'agent_thinking', payload: { reasoning: 'hm' }, timestamp: 1_000_000 },
      { type: 'tool_executing', payload: TOOL, timestamp: 1_000_000 },
      { type: 'tool_completed', payload: DONE, timestamp: 1_000_000 },
      { type: 'tool_completed', payload: { ...DONE, status: 'error' }, timestamp: 1_000_000 },
      { type: 'partial_result', payload: { text: 'hi' }, timestamp: 1_000_000 },
    ]);
  });

  test('unknown types are refused with the list of known ones', () => {
    const { emitter, posted } = rig();
    expect(() => emitter.emit('agent_completed', {})).toThrow(new TypeError('ctx.emit: unknown event type "agent_completed"; expected one of agent_thinking, tool_executing, tool_completed, partial_result'));
    expect(() => emitter.emit(42, {})).toThrow(TypeError);
    expect(() => emitter.emit(undefined, {})).toThrow('unknown event type undefined');
    expect(posted).toEqual([]);
  });

  test('a payload must be a plain object', () => {
    const { emitter } = rig();
    for (const p of [null, 'text', 3, ['text']]) expect(() => emitter.emit('partial_result', p)).toThrow(new TypeError('ctx.emit(partial_result): payload must be an object'));
    expect(() => emitter.emit('partial_result', undefined)).toThrow('payload must be an object');
  });

  test('each field is checked with its kind, and the message names the field and kind', () => {
    const { emitter, posted } = rig();
    const bad: [string, unknown, string][] = [
      ['agent_thinking', { reasoning: 1 }, 'ctx.emit(agent_thinking): payload.reasoning must be a string'],
      ['partial_result', {}, 'ctx.emit(partial_result): payload.text must be a string'],
      ['tool_executing', { ...TOOL, tool_call_id: 1 }, 'payload.tool_call_id must be a string'],
      ['tool_executing', { ...TOOL, tool_name: null }, 'payload.tool_name must be a string'],
      ['tool_executing', { tool_call_id: '1', tool_name: 'x' }, 'ctx.emit(tool_executing): payload.parameters must be a json'],
      ['tool_completed', { ...DONE, tool_call_id: 1 }, 'ctx.emit(tool_completed): payload.tool_call_id must be a string'],
      ['tool_completed', { ...DONE, tool_name: 2 }, 'ctx.emit(tool_completed): payload.tool_name must be a string'],
      ['tool_completed', { ...DONE, status: 'ok' }, 'ctx.emit(tool_completed): payload.status must be "success" or "error"'],
      ['tool_completed', { ...DONE, results: undefined }, 'payload.results must be a json'],
      ['tool_completed', { ...DONE, execution_time_ms: '3' }, 'ctx.emit(tool_completed): payload.execution_time_ms must be a number'],
      ['tool_completed', { ...DONE, execution_time_ms: Infinity }, 'payload.execution_time_ms must be a number'],
      ['tool_completed', { ...DONE, execution_time_ms: NaN }, 'payload.execution_time_ms must be a number'],
    ];
    for (const [type, payload, message] of bad) expect(() => emitter.emit(type, payload)).toThrow(message);
    expect(posted).toEqual([]);
    // null is JSON: parameters may be null.
    emitter.emit('tool_executing', { ...TOOL, parameters: null });
    expect(posted).toHaveLength(1);
  });

  test('a payload that JSON cannot hold is refused with the reason', () => {
    const { emitter } = rig();
    const cyclic: Record<string, unknown> = { text: 'x' };
    cyclic.self = cyclic;
    expect(() => emitter.emit('partial_result', cyclic)).toThrow(/^ctx\.emit\(partial_result\): payload is not JSON-serialisable: .*circular/i);
    expect(() => emitter.emit('tool_executing', { ...TOOL, parameters: { n: BigInt(1) } })).toThrow(TypeError);
  });

  test('what is posted is the JSON that was checked, not the agent object', () => {
    const { emitter, posted } = rig();
    const payload = { tool_call_id: '1', tool_name: 'x', parameters: { when: new Date(0) } };
    emitter.emit('tool_executing', payload);
    expect(posted[0].payload).not.toBe(payload);
    expect(posted[0].payload.parameters).toEqual({ when: '1970-01-01T00:00:00.000Z' });
  });
});

describe('caps', () => {
  test('an event over MAX_EVENT_BYTES is refused and ends the run: reported once, every later emit throws it', () => {
    const { emitter, posted, violations } = rig({ maxEventBytes: 100 });
    const fits = { reasoning: 'x'.repeat(100 - JSON.stringify({ reasoning: '' }).length) };
    emitter.emit('agent_thinking', fits);
    expect(posted).toHaveLength(1);
    let thrown: unknown;
    try {
      emitter.emit('agent_thinking', { reasoning: fits.reasoning + 'x' });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(LimitExceededError);
    expect(thrown).toMatchObject({ code: 'LIMIT_EXCEEDED', name: 'LimitExceededError', message: 'event agent_thinking is over MAX_EVENT_BYTES (100)' });
    expect(emitter.violation).toBe(thrown);
    expect(() => emitter.emit('agent_thinking', { reasoning: 'small' })).toThrow(thrown as Error);
    expect(violations).toEqual([thrown]);
    expect(posted).toHaveLength(1);
  });

  test('bytes are counted in UTF-8', () => {
    const { emitter } = rig({ maxEventBytes: 100 });
    const room = 100 - JSON.stringify({ reasoning: '' }).length;
    expect(() => emitter.emit('agent_thinking', { reasoning: 'é'.repeat(room / 2 + 1) })).toThrow(LimitExceededError);
  });

  // Within the count and the size of each, a run could emit MAX_EVENTS_PER_RUN × MAX_EVENT_BYTES (655 MB by
  // default), all held by the front on its way to the log: +650 MiB of its memory per run (helper-80).
  test('the event that takes the run past MAX_RUN_EVENT_BYTES in all is refused; what fits passes', () => {
    const { emitter, posted, violations } = rig({ maxEventBytes: 100, maxRunEventBytes: 250 });
    const hundred = { reasoning: 'x'.repeat(100 - JSON.stringify({ reasoning: '' }).length) };
    emitter.emit('agent_thinking', hundred);
    emitter.emit('agent_thinking', hundred);
    emitter.emit('agent_thinking', { reasoning: 'x'.repeat(50 - JSON.stringify({ reasoning: '' }).length) });
    expect(emitter.violation).toBeNull();
    expect(() => emitter.emit('agent_thinking', { reasoning: '' })).toThrow('run emitted more than MAX_RUN_EVENT_BYTES (250) bytes of events');
    expect(posted).toHaveLength(3);
    expect(violations).toHaveLength(1);
    expect(emitter.violation?.code).toBe('LIMIT_EXCEEDED');
  });

  test('the event after MAX_EVENTS_PER_RUN is refused; exactly that many pass', () => {
    const { emitter, posted, violations } = rig({ maxEventsPerRun: 3 });
    for (let i = 0; i < 3; i++) emitter.emit('agent_thinking', { reasoning: String(i) });
    expect(emitter.violation).toBeNull();
    expect(() => emitter.emit('agent_thinking', { reasoning: '3' })).toThrow('run emitted more than MAX_EVENTS_PER_RUN (3) events');
    expect(posted).toHaveLength(3);
    expect(violations).toHaveLength(1);
    expect(emitter.violation?.code).toBe('LIMIT_EXCEEDED');
  });

  test('invalid events are not counted against the cap', () => {
    const { emitter, posted } = rig({ maxEventsPerRun: 2 });
    expect(() => emitter.emit('nope', {})).toThrow();
    expect(() => emitter.emit('agent_thinking', {})).toThrow();
    emitter.emit('agent_thinking', { reasoning: 'a' });
    emitter.emit('agent_thinking', { reasoning: 'b' });
    expect(posted).toHaveLength(2);
  });

  // The cell's channel to the front reads nesting by recursion (protocol/json-nesting.ts): ~1,930 levels made it throw.
  test('a payload nested deeper than MAX_OUTPUT_DEPTH is refused with the reason, and not counted', () => {
    const { emitter, posted } = rig({ maxEventsPerRun: 1, maxEventBytes: 100_000 });
    const nested = (levels: number) => {
      let v: unknown = { leaf: 1 };
      for (let i = 1; i < levels; i++) v = { x: v };
      return v;
    };
    // The payload is one level, `parameters` the rest.
    expect(() => emitter.emit('tool_executing', { ...TOOL, parameters: nested(MAX_OUTPUT_DEPTH) })).toThrow(/^ctx\.emit\(tool_executing\): payload nests objects and arrays deeper than 64 levels$/);
    expect(() => emitter.emit('tool_executing', { ...TOOL, parameters: [nested(2000)] })).toThrow(TypeError);
    emitter.emit('tool_executing', { ...TOOL, parameters: nested(MAX_OUTPUT_DEPTH - 1) });
    expect(posted).toHaveLength(1);
  });

  test('a violation is reported once even if the agent swallows the error and goes on', () => {
    const { emitter, violations } = rig({ maxEventsPerRun: 1 });
    emitter.emit('agent_thinking', { reasoning: 'a' });
    for (let i = 0; i < 3; i++) expect(() => emitter.emit('agent_thinking', { reasoning: 'b' })).toThrow(LimitExceededError);
    expect(violations).toHaveLength(1);
  });

  test('after release every emit throws, and what was merged goes out first', () => {
    const { emitter, posted } = rig();
    emitter.emit('partial_result', { text: 'a' });
    emitter.emit('partial_result', { text: 'b' });
    emitter.release();
    expect(posted.map((e) => e.payload.text)).toEqual(['a', 'b']);
    expect(() => emitter.emit('partial_result', { text: 'c' })).toThrow('ctx.emit called after the run ended: the execution context is released');
    expect(jest.getTimerCount()).toBe(0);
  });
});

describe('stream merging', () => {
  test('a partial result exactly one interval after the last goes out at once; one ms earlier it is merged', () => {
    const { emitter, posted } = rig();
    emitter.emit('partial_result', { text: 'a' });
    jest.setSystemTime(1_000_000 + STREAM_INTERVAL_MS - 1);
    emitter.emit('partial_result', { text: 'b' });
    expect(posted).toHaveLength(1);
    jest.advanceTimersByTime(1); // the merge timer fires at the end of the interval
    expect(posted.map((e) => [e.payload.text, e.timestamp])).toEqual([
      ['a', 1_000_000],
      ['b', 1_000_000 + STREAM_INTERVAL_MS - 1],
    ]);
    jest.setSystemTime(Date.now() + STREAM_INTERVAL_MS);
    emitter.emit('partial_result', { text: 'c' });
    expect(posted).toHaveLength(3);
  });

  test('the merged event keeps the first merged text timestamp and goes out at lastPost + interval', () => {
    const { emitter, posted } = rig();
    emitter.emit('partial_result', { text: 'a' });
    jest.advanceTimersByTime(5);
    emitter.emit('partial_result', { text: 'b' });
    jest.advanceTimersByTime(5);
    emitter.emit('partial_result', { text: 'c' });
    jest.advanceTimersByTime(STREAM_INTERVAL_MS - 11);
    expect(posted).toHaveLength(1);
    jest.advanceTimersByTime(1);
    expect(posted[1]).toEqual({ type: 'partial_result', payload: { text: 'bc' }, timestamp: 1_000_005 });
  });

  test('an agent that blocks its event loop (timers never fire) is flushed by the clock at its next emit', () => {
    const { emitter, posted } = rig();
    emitter.emit('partial_result', { text: 'a' });
    emitter.emit('partial_result', { text: 'b' });
    jest.setSystemTime(1_000_000 + STREAM_INTERVAL_MS); // time passes, no timer runs
    emitter.emit('partial_result', { text: 'c' });
    // b went out before c was taken; c starts a new interval.
    expect(posted.map((e) => [e.payload.text, e.timestamp])).toEqual([
      ['a', 1_000_000],
      ['b', 1_000_000],
    ]);
    jest.advanceTimersByTime(STREAM_INTERVAL_MS);
    expect(posted.map((e) => e.payload.text)).toEqual(['a', 'b', 'c']);
  });

  test('the merge is cut before it would pass MAX_EVENT_BYTES; exactly at the cap it fits', () => {
    // {"text":""} is 11 bytes: with maxEventBytes 31, merged texts may hold 20 bytes.
    const { emitter, posted } = rig({ maxEventBytes: 31 });
    emitter.emit('partial_result', { text: 'first' });
    emitter.emit('partial_result', { text: '0123456789' });
    emitter.emit('partial_result', { text: '0123456789' }); // 20 bytes: still one merged event
    expect(posted).toHaveLength(1);
    emitter.emit('partial_result', { text: 'x' }); // 21: the 20 go out first
    expect(posted.map((e) => e.payload.text)).toEqual(['first', '01234567890123456789']);
    for (const e of posted) expect(Buffer.byteLength(JSON.stringify(e.payload))).toBeLessThanOrEqual(31);
    jest.advanceTimersByTime(STREAM_INTERVAL_MS);
    expect(posted.map((e) => e.payload.text)).toEqual(['first', '01234567890123456789', 'x']);
  });

  test('after a merge flushed by size, the rest goes out one interval later', () => {
    const { emitter, posted } = rig({ maxEventBytes: 31 });
    emitter.emit('partial_result', { text: 'first' });
    jest.advanceTimersByTime(10);
    emitter.emit('partial_result', { text: '01234567890123456789' });
    emitter.emit('partial_result', { text: 'x' });
    expect(posted).toHaveLength(2);
    jest.advanceTimersByTime(STREAM_INTERVAL_MS - 1);
    expect(posted).toHaveLength(2);
    jest.advanceTimersByTime(1);
    expect(posted.map((e) => e.payload.text)).toEqual(['first', '01234567890123456789', 'x']);
  });

  test('a partial result with fields besides text is never merged, and keeps its fields', () => {
    const { emitter, posted } = rig();
    emitter.emit('partial_result', { text: 'a' });
    emitter.emit('partial_result', { text: 'b', index: 2 });
    emitter.emit('partial_result', { text: 'c' });
    jest.advanceTimersByTime(STREAM_INTERVAL_MS);
    expect(posted.map((e) => e.payload)).toEqual([{ text: 'a' }, { text: 'b', index: 2 }, { text: 'c' }]);
  });

  test('other event types flush the merge first; a flush with nothing merged posts nothing', () => {
    const { emitter, posted } = rig();
    emitter.emit('agent_thinking', { reasoning: 'r' });
    emitter.emit('partial_result', { text: 'a' });
    emitter.emit('partial_result', { text: 'b' });
    emitter.emit('agent_thinking', { reasoning: 's' });
    emitter.emit('agent_thinking', { reasoning: 't' });
    expect(posted.map((e) => e.type)).toEqual(['agent_thinking', 'partial_result', 'partial_result', 'agent_thinking', 'agent_thinking']);
    // The merged flush counts as a stream post: the next partial within the interval merges.
    emitter.emit('partial_result', { text: 'c' });
    expect(posted).toHaveLength(5);
    jest.advanceTimersByTime(STREAM_INTERVAL_MS);
    expect(posted).toHaveLength(6);
    expect(jest.getTimerCount()).toBe(0);
  });
});

describe('events in flight (EVENTS_IN_FLIGHT)', () => {
  /** A port whose cell reads only when the test says. */
  function slowCell() {
    const posted: { type: string; payload: any }[] = [];
    const eventsTaken = new Int32Array(new SharedArrayBuffer(4));
    const port = { postMessage: (m: any) => posted.push(m.event) } as never;
    const limits = { maxEventsPerRun: 1000, maxEventBytes: 1000, maxRunEventBytes: 1_000_000, maxResultBytes: 10_000 } as never;
    const read = (n: number) => {
      Atomics.add(eventsTaken, 0, n);
      Atomics.notify(eventsTaken, 0);
    };
    return { posted, read, emitter: createRunEmitter(port, limits, () => undefined, eventsTaken) };
  }
  const settle = () => new Promise((r) => jest.requireActual<typeof import('node:timers')>('node:timers').setImmediate(r));

  test('no more than the window is posted before the cell reads; the rest follow in order as it reads, and drained() waits for them', async () => {
    const { posted, read, emitter } = slowCell();
    for (let i = 0; i < 20; i++) emitter.emit('agent_thinking', { reasoning: `r${i}` });
    expect(posted).toHaveLength(EVENTS_IN_FLIGHT);
    let drained = false;
    void emitter.drained().then(() => (drained = true));
    await settle();
    expect(posted).toHaveLength(EVENTS_IN_FLIGHT);
    expect(drained).toBe(false);
    read(3);
    await settle();
    expect(posted).toHaveLength(EVENTS_IN_FLIGHT + 3);
    read(20);
    await settle();
    await settle();
    expect(posted.map((e) => e.payload.reasoning)).toEqual(Array.from({ length: 20 }, (_, i) => `r${i}`));
    expect(drained).toBe(true);
  });

  test('with nothing waiting, drained() resolves at once', async () => {
    const { posted, emitter } = slowCell();
    emitter.emit('agent_thinking', { reasoning: 'one' });
    let drained = false;
    void emitter.drained().then(() => (drained = true));
    await settle();
    expect([posted.length, drained]).toEqual([1, true]);
  });
});
