/** The one deepFreeze the front and the workers share (protocol/deep-freeze.ts). */
import { deepFreeze } from '../../protocol/deep-freeze';

test('freezes the value and everything reachable through its own properties, and returns the same value', () => {
  const value = { a: { b: [1, { c: 'x' }] }, list: [[1], [2]] };
  expect(deepFreeze(value)).toBe(value);
  for (const o of [value, value.a, value.a.b, value.a.b[1], value.list, value.list[0], value.list[1]]) expect(Object.isFrozen(o)).toBe(true);
  expect(() => {
    'use strict';
    (value.a.b[1] as { c: string }).c = 'changed';
  }).toThrow(TypeError);
});

test('walks into an already frozen object: its members are frozen too', () => {
  const inner = { mutable: true };
  const outer = Object.freeze({ inner });
  deepFreeze(outer);
  expect(Object.isFrozen(inner)).toBe(true);
});

test('shared and cyclic references are fine', () => {
  const shared = { n: 1 };
  const cyclic: { self?: unknown; shared: object; again: object } = { shared, again: shared };
  cyclic.self = cyclic;
  expect(deepFreeze(cyclic)).toBe(cyclic);
  expect(Object.isFrozen(cyclic)).toBe(true);
  expect(Object.isFrozen(shared)).toBe(true);
});

test('primitives, null and functions pass through untouched', () => {
  expect(deepFreeze(null)).toBeNull();
  expect(deepFreeze(undefined)).toBeUndefined();
  expect(deepFreeze(3)).toBe(3);
  expect(deepFreeze('s')).toBe('s');
  const fn = () => 1;
  expect(deepFreeze(fn)).toBe(fn);
  expect(Object.isFrozen(fn)).toBe(false);
  // A function inside an object is kept as it is, the object around it frozen (built-in tools hold handlers).
  const tool = { name: 't', handler: fn, parameters: { type: 'object' } };
  deepFreeze(tool);
  expect(Object.isFrozen(tool.parameters)).toBe(true);
  expect(Object.isFrozen(fn)).toBe(false);
});
