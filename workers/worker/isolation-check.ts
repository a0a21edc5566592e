/**
 * What a run may leave behind in its worker, measured around each run: new or changed globals
 * (globalThis and the prototypes of built-ins) and resources it opened and did not close. Either one makes
 * the worker unfit for the next run: it is recycled.
 */
import { EventEmitter } from 'node:events';
import { MessagePort } from 'node:worker_threads';
import type { LeakKind } from '../../protocol/cell-messages.js';

// Host prototypes too: every run's events and answer go through MessagePort.prototype.postMessage.
const BUILTINS: [string, object][] = [
  ['MessagePort.prototype', MessagePort.prototype],
  ['EventTarget.prototype', EventTarget.prototype],
  ['EventEmitter.prototype', EventEmitter.prototype],
  ['globalThis', globalThis],
  ['Object.prototype', Object.prototype],
  ['Array.prototype', Array.prototype],
  ['Function.prototype', Function.prototype],
  ['String.prototype', String.prototype],
  ['Number.prototype', Number.prototype],
  ['Boolean.prototype', Boolean.prototype],
  ['Symbol.prototype', Symbol.prototype],
  ['BigInt.prototype', BigInt.prototype],
  ['Promise.prototype', Promise.prototype],
  ['Map.prototype', Map.prototype],
  ['Set.prototype', Set.prototype],
  ['WeakMap.prototype', WeakMap.prototype],
  ['RegExp.prototype', RegExp.prototype],
  ['Date.prototype', Date.prototype],
  // What the runtime calls between this check and its answer (Date.now, a Set's iterator for the walls hit) must be
  // compared here or taken before any agent loads (worker-runtime.ts): a patch there acts after the check, unnamed.
  ['Date', Date],
  ['%SetIteratorPrototype%', Object.getPrototypeOf(new Set().values()) as object],
  ['%ArrayIteratorPrototype%', Object.getPrototypeOf([].values()) as object],
  ['%IteratorPrototype%', Object.getPrototypeOf(Object.getPrototypeOf([].values())) as object],
  ['Error.prototype', Error.prototype],
  ['ArrayBuffer.prototype', ArrayBuffer.prototype],
  ['Uint8Array.prototype', Uint8Array.prototype],
  ['Buffer.prototype', Buffer.prototype],
  ['JSON', JSON],
  ['Atomics', Atomics],
  ['Math', Math],
  ['Reflect', Reflect],
  ['Object', Object],
  ['Array', Array],
  ['Promise', Promise],
];

/** One built-in's own properties as they were: keys in order, and each key's value, getter and setter. */
interface OwnerSnapshot {
  owner: string;
  obj: object;
  /**
   * Frozen when the snapshot was taken (lockdown hardens most built-ins before it): a frozen object can never
   * gain, lose or replace an own property again, so it is not compared.
   */
  frozen: boolean;
  keys: (string | symbol)[];
  /** Indices of the keys whose property can still change (configurable, or a writable value); the others cannot. */
  mutable: number[];
  values: unknown[];
  getters: unknown[];
  setters: unknown[];
}
export type GlobalsSnapshot = OwnerSnapshot[];

/** Node defines some globals lazily (a getter that replaces itself on first read): settle them first. */
export function settleLazyGlobals(): void {
  for (const key of Reflect.ownKeys(globalThis)) {
    try {
      void (globalThis as Record<string | symbol, unknown>)[key];
    } catch {
      // a getter that throws is left as it is
    }
  }
}

export function snapshotGlobals(): GlobalsSnapshot {
  return BUILTINS.map(([owner, obj]) => {
    const keys = Reflect.ownKeys(obj);
    const snap: OwnerSnapshot = { owner, obj, frozen: Object.isFrozen(obj), keys, mutable: [], values: [], getters: [], setters: [] };
    for (const [i, key] of keys.entries()) {
      const d = Reflect.getOwnPropertyDescriptor(obj, key)!;
      if (d.configurable || d.writable) snap.mutable.push(i);
      snap.values.push(d.value);
      snap.getters.push(d.get);
      snap.setters.push(d.set);
    }
    return snap;
  });
}

/**
 * Names of globals added, removed or replaced since `clean` (at most 20). Runs twice per run, so it
 * compares in place and builds names only for what differs (about 600 properties: ~0.03 ms instead of
 * ~0.4 ms for a fresh snapshot and a map of names), and skips what cannot change: frozen built-ins (most of
 * them once locked down) and, elsewhere, properties that are neither configurable nor writable.
 */
export function changedGlobals(clean: GlobalsSnapshot): string[] {
  const changed: string[] = [];
  for (const snap of clean) {
    if (snap.frozen) continue;
    const keys = Reflect.ownKeys(snap.obj);
    // Same keys in the same order is the common case; anything else is sorted out by name below.
    let sameKeys = keys.length === snap.keys.length;
    for (let i = 0; sameKeys && i < keys.length; i++) sameKeys = keys[i] === snap.keys[i];
    if (sameKeys) {
      for (const i of snap.mutable) {
        const d = Reflect.getOwnPropertyDescriptor(snap.obj, keys[i])!;
        if (!Object.is(d.value, snap.values[i]) || d.get !== snap.getters[i] || d.set !== snap.setters[i]) changed.push(`${snap.owner}.${String(keys[i])}`);
      }
    } else {
      const before = new Map(snap.keys.map((k, i) => [k, i]));
      for (const key of keys) {
        const i = before.get(key);
        const d = Reflect.getOwnPropertyDescriptor(snap.obj, key)!;
        if (i === undefined || !Object.is(d.value, snap.values[i]) || d.get !== snap.getters[i] || d.set !== snap.setters[i]) changed.push(`${snap.owner}.${String(key)}`);
        before.delete(key);
      }
      for (const key of before.keys()) changed.push(`${snap.owner}.${String(key)}`);
    }
    if (changed.length >= 20) break;
  }
  return changed.slice(0, 20);
}

/**
 * `clean` with what changed between `before` and `after` (snapshots taken around trusted code that ran with no
 * agent code in between, such as loading the worker's Prisma client in the middle of a run) taken into it:
 * those changes are part of the clean state from then on. Anything else that differs from `clean` (what the
 * run did before) still differs.
 */
export function adoptChanges(clean: GlobalsSnapshot, before: GlobalsSnapshot, after: GlobalsSnapshot): GlobalsSnapshot {
  return clean.map((snap, n) => {
    const b = before[n]!;
    const a = after[n]!;
    const at = (s: OwnerSnapshot, i: number) => ({ value: s.values[i], get: s.getters[i], set: s.setters[i] });
    const beforeAt = new Map(b.keys.map((k, i) => [k, i]));
    const entries = new Map(snap.keys.map((k, i) => [k, at(snap, i)]));
    let changed = false;
    for (let i = 0; i < a.keys.length; i++) {
      const j = beforeAt.get(a.keys[i]!);
      beforeAt.delete(a.keys[i]!);
      if (j !== undefined && Object.is(b.values[j], a.values[i]) && b.getters[j] === a.getters[i] && b.setters[j] === a.setters[i]) continue;
      entries.set(a.keys[i]!, at(a, i));
      changed = true;
    }
    for (const key of beforeAt.keys()) changed = entries.delete(key) || changed;
    if (!changed) return snap;
    // The object's own key order where it has the key, so the next check takes the in-place path.
    const keys = [...a.keys.filter((k) => entries.has(k)), ...[...entries.keys()].filter((k) => !a.keys.includes(k))];
    // Which properties can still change, read now (no agent code ran since `after`); one that is gone may come back.
    const mutable = keys.flatMap((k, i) => {
      const d = Reflect.getOwnPropertyDescriptor(snap.obj, k);
      return !d || d.configurable || d.writable ? [i] : [];
    });
    return { owner: snap.owner, obj: snap.obj, frozen: snap.frozen && Object.isFrozen(snap.obj), keys, mutable, values: keys.map((k) => entries.get(k)!.value), getters: keys.map((k) => entries.get(k)!.get), setters: keys.map((k) => entries.get(k)!.set) };
  });
}

export type ResourceCounts = Record<string, number>;

const KINDS: [RegExp, LeakKind][] = [
  [/^(Timeout|Immediate)$/, 'timer'],
  [/TCP|Pipe|UDP|TLS|HTTP|Socket/i, 'socket'],
  [/^(FSReq|FileHandle|FSEvent|StatWatcher)/, 'file'],
  [/^(ProcessWrap|ChildProcess)/, 'process'],
];

export function kindOf(resource: string): LeakKind {
  return KINDS.find(([re]) => re.test(resource))?.[1] ?? 'other';
}

/** Live (ref'd) libuv resources of this worker, by kind. */
export function activeResources(): ResourceCounts {
  const counts: ResourceCounts = {};
  for (const r of process.getActiveResourcesInfo()) {
    // A close already in progress is not a leak: the run did close it.
    if (r === 'CloseReq') continue;
    const kind = kindOf(r);
    counts[kind] = (counts[kind] ?? 0) + 1;
  }
  return counts;
}

/** Resources alive now that were not alive before the run, by kind. */
export function leakedResources(before: ResourceCounts, after: ResourceCounts): ResourceCounts {
  const leaked: ResourceCounts = {};
  for (const [kind, n] of Object.entries(after)) {
    const extra = n - (before[kind] ?? 0);
    if (extra > 0) leaked[kind] = extra;
  }
  return leaked;
}
