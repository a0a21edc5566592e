/**
 * What a run may leave behind in its worker thread, measured around each run: new or changed globals
 * (globalThis and the prototypes of built-ins) and resources it opened and did not close. Either one makes
 * the thread unfit for the next run: it is recycled.
 */

const BUILTINS: [string, object][] = [
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
  ['Error.prototype', Error.prototype],
  ['ArrayBuffer.prototype', ArrayBuffer.prototype],
  ['Uint8Array.prototype', Uint8Array.prototype],
  ['Buffer.prototype', Buffer.prototype],
  ['JSON', JSON],
  ['Math', Math],
  ['Reflect', Reflect],
  ['Object', Object],
  ['Array', Array],
  ['Promise', Promise],
];

type Slot = { value: unknown; get: unknown; set: unknown };
export type GlobalsSnapshot = Map<string, Slot>;

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
  const snap: GlobalsSnapshot = new Map();
  for (const [owner, obj] of BUILTINS) {
    for (const key of Reflect.ownKeys(obj)) {
      const d = Reflect.getOwnPropertyDescriptor(obj, key)!;
      snap.set(`${owner}.${String(key)}`, { value: d.value, get: d.get, set: d.set });
    }
  }
  return snap;
}

/** Names of globals added, removed or replaced since `before` (at most 20). */
export function changedGlobals(before: GlobalsSnapshot, after: GlobalsSnapshot): string[] {
  const changed: string[] = [];
  for (const [name, slot] of after) {
    const prior = before.get(name);
    if (!prior || !Object.is(prior.value, slot.value) || prior.get !== slot.get || prior.set !== slot.set) changed.push(name);
  }
  for (const name of before.keys()) if (!after.has(name)) changed.push(name);
  return changed.slice(0, 20);
}

export type ResourceCounts = Record<string, number>;

const KINDS: [RegExp, string][] = [
  [/^(Timeout|Immediate)$/, 'timer'],
  [/TCP|Pipe|UDP|TLS|HTTP|Socket/i, 'socket'],
  [/^(FSReq|FileHandle|FSEvent|StatWatcher)/, 'file'],
  [/^(ProcessWrap|ChildProcess)/, 'process'],
];

export function kindOf(resource: string): string {
  return KINDS.find(([re]) => re.test(resource))?.[1] ?? 'other';
}

/** Live (ref'd) libuv resources of this thread, by kind. */
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
