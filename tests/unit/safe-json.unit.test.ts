/** assertSafePayload's refusals, each naming its place as `what` then `.key` and `[index]`, and what it lets through. */
import { assertSafePayload, MAX_DEPTH } from '../../protocol/safe-json';

function refusal(value: unknown): { code: string; message: string } | 'accepted' {
  try {
    assertSafePayload(value, 'body');
    return 'accepted';
  } catch (err) {
    return { code: (err as { code: string }).code, message: (err as Error).message };
  }
}

test('each refusal names its place, with the messages clients have always been given', () => {
  let deep: unknown = 'leaf';
  for (let i = 0; i <= MAX_DEPTH; i++) deep = i % 2 ? [deep] : { n: deep };
  const cases: [unknown, string][] = [
    [{ a: [{ b: 'ok' }, { c: 'bell\u0007' }] }, 'invalid body: control characters in body.a[1].c'],
    ['\u001f', 'invalid body: control characters in body'],
    [{ list: [1, 2, { blob: Buffer.from('x') }] }, 'invalid body: binary value at body.list[2].blob; send text or JSON'],
    [[new Uint8Array(2)], 'invalid body: binary value at body[0]; send text or JSON'],
    [JSON.parse('{"x":{"y":[{"__proto__":{}}]}}'), 'invalid body: key "__proto__" is not allowed (at body.x.y[0])'],
    [{ x: { constructor: 1 } }, 'invalid body: key "constructor" is not allowed (at body.x)'],
    [{ prototype: 1 }, 'invalid body: key "prototype" is not allowed (at body)'],
    [{ x: [{ 'k\u0000': 1 }] }, 'invalid body: control characters in a key at body.x[0]'],
    [deep, `invalid body: nested deeper than ${MAX_DEPTH} levels at body${'.n[0]'.repeat(MAX_DEPTH / 2)}.n`],
  ];
  for (const [value, message] of cases) expect(refusal(value)).toEqual({ code: 'BAD_REQUEST', message });
});

test('JSON without those is accepted, however wide', () => {
  const wide = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, [i, 'tab\tnewline\n', null, true]]));
  expect(refusal({ agent: 'echo', input: wide })).toBe('accepted');
  expect(refusal([[[['x']]]])).toBe('accepted');
});
