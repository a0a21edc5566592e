/** The after-run globals check (workers/worker/isolation-check.ts): what it names, and what it may skip. */
import { changedGlobals, snapshotGlobals } from '../../workers/worker/isolation-check';

const g = globalThis as Record<string, unknown>;

test('a global added, replaced or removed, and a built-in method replaced, are named', () => {
  g.isoKept = 1;
  g.isoRemoved = 2;
  const clean = snapshotGlobals();
  expect(changedGlobals(clean)).toEqual([]);
  g.isoKept = 3;
  delete g.isoRemoved;
  g.isoAdded = 4;
  const trim = String.prototype.trim;
  String.prototype.trim = function () {
    return 'patched';
  };
  try {
    expect(changedGlobals(clean).sort()).toEqual(['String.prototype.trim', 'globalThis.isoAdded', 'globalThis.isoKept', 'globalThis.isoRemoved']);
  } finally {
    String.prototype.trim = trim;
    delete g.isoKept;
    delete g.isoAdded;
  }
});

test('what the worker runtime calls after the check is compared too: Date.now, the iterators of a Set and an array', () => {
  const clean = snapshotGlobals();
  const setIterator = Object.getPrototypeOf(new Set().values());
  const arrayIterator = Object.getPrototypeOf([].values());
  const saved = [Date.now, setIterator.next, arrayIterator.next] as const;
  Date.now = () => 0;
  setIterator.next = function () {
    return saved[1].call(this);
  };
  arrayIterator.next = function () {
    return saved[2].call(this);
  };
  try {
    expect(changedGlobals(clean).sort()).toEqual(['%ArrayIteratorPrototype%.next', '%SetIteratorPrototype%.next', 'Date.now']);
  } finally {
    [Date.now, setIterator.next, arrayIterator.next] = saved;
  }
});

test('an accessor swapped for another is named; a property that can never change again is not re-read', () => {
  Object.defineProperty(globalThis, 'isoAccessor', { get: () => 1, configurable: true });
  Object.defineProperty(globalThis, 'isoFixed', { value: 1, writable: false, configurable: false });
  // Not configurable but writable: its value can still change, so it is compared.
  Object.defineProperty(globalThis, 'isoWritable', { value: 1, writable: true, configurable: false });
  const clean = snapshotGlobals();
  Object.defineProperty(globalThis, 'isoAccessor', { get: () => 1, configurable: true });
  g.isoWritable = 2;
  expect(changedGlobals(clean).sort()).toEqual(['globalThis.isoAccessor', 'globalThis.isoWritable']);
  // Neither writable nor configurable: the language itself keeps it as it was.
  expect(() => Object.defineProperty(globalThis, 'isoFixed', { value: 2 })).toThrow(TypeError);
  delete g.isoAccessor;
});

test('a built-in frozen before the snapshot is skipped: frozen is for good', () => {
  const clean = snapshotGlobals();
  // Math is not frozen here (no lockdown in this test's realm): it is compared.
  expect(clean.find((s) => s.owner === 'Math')!.frozen).toBe(false);
  const frozen = clean.map((s) => (s.owner === 'Math' ? { ...s, frozen: true } : s));
  const max = Math.max;
  Math.max = () => 0;
  try {
    expect(changedGlobals(clean)).toEqual(['Math.max']);
    // Only ever true for an object that is frozen for good, so the change above could not have happened.
    expect(changedGlobals(frozen)).toEqual([]);
  } finally {
    Math.max = max;
  }
});
