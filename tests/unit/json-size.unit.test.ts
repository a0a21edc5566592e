/** jsonBytesWithin: the exact size of JSON.stringify's bytes within the limit, null over it, and no more of the value looked at than the limit's worth. */
import { jsonBytesWithin } from '../../protocol/json-size';

const bytesOf = (v: unknown) => Buffer.byteLength(JSON.stringify(v));

test('within the limit it is the byte length of JSON.stringify, exactly; one byte less and it is null', () => {
  const values: unknown[] = [
    'plain',
    '',
    'quote " backslash \\ tab \t newline \n bell \u0007',
    'é ü 漢字 😀',
    'del \u007f ~ space',
    '\ud800 lone surrogate \udfff',
    0,
    -0,
    1.5e-7,
    1e21,
    -123.456,
    true,
    false,
    null,
    [],
    {},
    [1, 'two', [3, [4]], { five: 5 }, null],
    { text: 'hi', nested: { a: [1, 2, { b: 'ü' }], 'key "quoted"': 'é', 'ключ': [] } },
    JSON.parse('{"__proto__":{"polluted":1},"x":1}'),
    JSON.parse(JSON.stringify(Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`k${i}`, i % 3 ? 'v' : i])))),
  ];
  for (const v of values) {
    const size = bytesOf(v);
    expect([v, jsonBytesWithin(v, size)]).toEqual([v, size]);
    expect([v, jsonBytesWithin(v, size + 100)]).toEqual([v, size]);
    expect([v, jsonBytesWithin(v, size - 1)]).toEqual([v, null]);
  }
});

test('members JSON.stringify leaves out count nothing; what it writes as null counts at most that', () => {
  const v = { a: 1, gone: undefined, f: () => 1, s: Symbol('s'), list: [1, undefined] };
  expect(jsonBytesWithin(v, 1000)).toBeLessThanOrEqual(bytesOf(v));
  expect(jsonBytesWithin({ a: 1, gone: undefined }, 1000)).toBe(bytesOf({ a: 1 }));
  // Binary (refused by the payload checks) counts no more than its JSON.
  const withBuffer = { blob: Buffer.from('abc') };
  expect(jsonBytesWithin(withBuffer, 1000)).toBeLessThanOrEqual(bytesOf(withBuffer));
});

test('a wide object over the limit is read only as far as the limit', () => {
  let reads = 0;
  const wide: Record<string, number> = {};
  for (let i = 0; i < 10_000; i++) {
    Object.defineProperty(wide, `k${i}`, { enumerable: true, get: () => (reads++, 0) });
  }
  expect(jsonBytesWithin(wide, 100)).toBeNull();
  expect(reads).toBeLessThan(20);
  // An array or string over the limit is refused by its length alone.
  expect(jsonBytesWithin(new Array(1_000_000).fill(0), 1000)).toBeNull();
  expect(jsonBytesWithin('x'.repeat(1_000_000), 1000)).toBeNull();
});

test('a value nested far deeper than the stack allows is measured without overflowing it', () => {
  const depth = 100_000;
  const deep = JSON.parse('['.repeat(depth) + ']'.repeat(depth));
  expect(jsonBytesWithin(deep, 10 * depth)).toBe(2 * depth);
  expect(jsonBytesWithin(deep, depth)).toBeNull();
});
