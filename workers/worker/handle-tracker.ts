/**
 * Counts the handles a run opened and did not close, unref'd ones included: process.getActiveResourcesInfo()
 * lists only ref'd handles, so a server or an interval the run unref'd would outlive it unseen. An
 * async_hooks init/destroy pair sees every handle, ref'd or not; it is enabled from a worker's first run on (between
 * runs nothing else runs, and with an init hook V8 reports every promise too: ~2.5-4 µs each; README, Containment).
 * Between runs it also watches for code of the last run acting (leftBehind()).
 */
import type { createHook as CreateHook } from 'node:async_hooks';
import type { LeakKind } from '../../protocol/cell-messages.js';
import type { ResourceCounts } from './isolation-check.js';
import { wrapFreed } from './socket-handles.js';

/**
 * Async resource types that are handles a run may leave open, by kind. Everything else (promises, ticks,
 * requests that end by themselves, DNS's lazily created resolver shared by all runs, its DNSCHANNEL) is not counted.
 * TLSWRAP rides on a TCPWRAP that is counted already. FILEHANDLE is left out: its destroy comes only when
 * the closed handle is garbage-collected (Prisma's first query reads its WebAssembly through two).
 */
const HANDLE_KINDS: Record<string, LeakKind> = {
  Timeout: 'timer',
  TCPWRAP: 'socket',
  TCPSERVERWRAP: 'socket',
  PIPEWRAP: 'socket',
  PIPESERVERWRAP: 'socket',
  UDPWRAP: 'socket',
  // A DNS query still pending: its channel holds a socket to the server until it is answered or times out
  // (resolver-sockets.ts).
  QUERYWRAP: 'socket',
  HTTP2SESSION: 'socket',
  PROCESSWRAP: 'process',
  FSEVENTWRAP: 'file',
  STATWATCHER: 'file',
  MESSAGEPORT: 'other',
  WORKER: 'other',
};

export interface HandleTracker {
  /** Starts counting handles created from now on (call when the run starts). */
  start(): void;
  /** Not the run's: a handle the runtime itself opened while the run was being counted. */
  exclude(resource: object): void;
  /** Handles created since start() and not destroyed yet, by kind. Keeps counting until between() or stop(). */
  open(): ResourceCounts;
  /**
   * The run has ended and its worker is kept: watch until the next start() for code of that run acting meanwhile
   * (leftBehind()). The timers the count let go (one-shot, at most a second) may fire once.
   */
  between(): void;
  /**
   * Resolves once every timer the count let go has fired, or could have: at most SOON_MS + LATE_MS after between().
   * The worker takes no other run meanwhile, so such a timer fires between runs, where the watch sees what it does.
   */
  settled(): Promise<void>;
  /**
   * What acted between the last run's end and now, if anything (call before the next run's start): a handle or an
   * immediate created, a timer of a run the count did not hold firing, a timer it let go firing twice or still
   * scheduled (rescheduled, or not fired by its time). Null: nothing; the next run may start here.
   */
  leftBehind(): string | null;
  stop(): void;
}

/**
 * `createHook`, `executionAsyncResource`: async_hooks' own (not the guarded ones agent code gets), so `exclude` can
 * name real resources. `getAsyncId`: AsyncWrap's native one (socket-handles.ts). A native handle counts until its wrap
 * is freed, whatever destroys are emitted: agent code can emit one for any id (`AsyncResource`'s `emitDestroy` on an
 * object carrying that id: helper-73 hid its open handles from the count so), and Node's http Agent gives a reused
 * keep-alive socket a new id (destroy for the old, init for the new with a plain object), so the handle is looked at
 * itself. A timer counts until Node marks it destroyed; any other resource until its destroy.
 */
export function createHandleTracker(
  hooks: { createHook: typeof CreateHook; executionAsyncResource: () => object },
  getAsyncId: (this: object) => number,
  now: () => number = Date.now,
): HandleTracker {
  const live = new Map<number, { type: string; kind: string; resource: object }>();
  /** Whether a tracked resource has ended, at its destroy. */
  const ended = (type: string, resource: object): boolean => {
    if (type === 'Timeout') return (resource as { _destroyed?: unknown })._destroyed === true;
    return wrapFreed(getAsyncId, resource) !== false;
  };
  // Between runs (between() .. leftBehind()): what acted, and the timers the count let go, by resource: async ids are
  // agent code's to rewrite (a timer's own id symbol is a writable property: helper-79 hid an interval so).
  let watching = false;
  let stirred: string | null = null;
  let portsBetween = 0;
  let started = false;
  /** Timers and immediates made since the first run started: what the worker's start-up made (agent modules loading included) is its own. */
  const runTimers = new WeakSet<object>();
  const letGo = new Map<object, { fired: number }>();
  const hook = hooks.createHook({
    init(asyncId, type, _triggerAsyncId, resource) {
      if (type === 'Timeout' || type === 'Immediate') runTimers.add(resource);
      // The next task's own port arrives between runs: the runtime's, neither a leftover nor the next run's. A
      // second is code of the last run (a MessageChannel: its ports' messages could keep it going).
      if (watching && type === 'MESSAGEPORT' && ++portsBetween === 1) return;
      const kind = HANDLE_KINDS[type];
      // A handle or an immediate made between runs is code of the last run acting after it ended (a timer's
      // callback arming an interval: helper-76).
      if (watching && (kind || type === 'Immediate')) stirred ??= `${type} created between runs`;
      // An id already live keeps its first resource: `asyncReset` on a native handle emits init again for an id the
      // caller chooses, with an object of its own, which would then answer for the handle (helper-74).
      if (kind && !live.has(asyncId)) live.set(asyncId, { type, kind, resource });
    },
    destroy(asyncId) {
      const entry = live.get(asyncId);
      if (entry && ended(entry.type, entry.resource)) live.delete(asyncId);
    },
  });
  // Only between runs: with a `before` hook V8 reports every promise's callbacks too.
  const watch = hooks.createHook({
    before() {
      // The resource about to run, as Node hands it over (not its id, which agent code can rewrite).
      const resource = hooks.executionAsyncResource();
      if (!runTimers.has(resource)) return;
      if (hasOwn(resource, '_onImmediate')) {
        stirred ??= 'an immediate ran between runs';
        return;
      }
      // A timer the count let go fires once (fetch's own tick). Any other timer of a run firing now was hidden from
      // the count: one whose destroy agent code forged after marking it destroyed.
      const held = letGo.get(resource);
      if (held && held.fired++ === 0) return;
      stirred ??= held ? 'a timer the count let go fired again between runs' : 'a timer the count did not hold fired between runs';
    },
  });
  const stillScheduled = () => [...letGo.keys()].filter(scheduled);
  return {
    start() {
      // What the last run left is judged (leftBehind) before this one starts: from here, what is open is this run's.
      live.clear();
      started = true;
      hook.enable();
    },
    exclude(resource) {
      for (const [id, entry] of live) if (entry.resource === resource) live.delete(id);
    },
    open() {
      const counts: ResourceCounts = {};
      for (const [id, { kind, resource }] of live) {
        // Freed since under another id (a reused keep-alive socket closed later).
        if (wrapFreed(getAsyncId, resource) === true) {
          live.delete(id);
          continue;
        }
        if (!firesSoon(resource)) counts[kind] = (counts[kind] ?? 0) + 1;
      }
      return counts;
    },
    between() {
      letGo.clear();
      // The others open then are the run's leaks: its worker is retired, and takes no run again.
      for (const { type, resource } of live.values()) if (type === 'Timeout' && scheduled(resource) && firesSoon(resource)) letGo.set(resource, { fired: 0 });
      stirred = null;
      portsBetween = 0;
      watching = started;
      if (watching) watch.enable();
    },
    async settled() {
      // Each was due within SOON_MS of the run's end; a starved thread fires it late, but before it reads anything.
      const deadline = now() + SOON_MS + LATE_MS;
      const wait = new Int32Array(new SharedArrayBuffer(4));
      while (watching && stillScheduled().some((t) => (letGo.get(t)?.fired ?? 0) === 0) && now() < deadline) await waitAsync(wait, 0, 0, SETTLE_POLL_MS).value;
    },
    leftBehind() {
      watch.disable();
      const why = stirred ?? (stillScheduled().length > 0 ? 'a timer the count let go is still scheduled after its time' : null);
      watching = false;
      stirred = null;
      letGo.clear();
      return why;
    },
    stop() {
      hook.disable();
      watch.disable();
      watching = false;
      letGo.clear();
      live.clear();
    },
  };
}

/** How often settled() looks at the timers the count let go; it waits without a timer of its own (one would be watched). */
const SETTLE_POLL_MS = 10;
const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number, t: number): { value: Promise<string> | string } }).waitAsync;

/** How late past its time a timer the count let go may still fire: the next task and the timer wake the same loop. */
const LATE_MS = 1000;

function hasOwn(o: object, key: string): boolean {
  return Reflect.getOwnPropertyDescriptor(o, key) !== undefined;
}

/** An own data property's value; an accessor (agent code answering differently to each reader) reads as itself. */
function ownValue(o: object, key: string): unknown {
  const d = Reflect.getOwnPropertyDescriptor(o, key);
  return d && 'value' in d ? d.value : d;
}

/** Whether a timer is on one of Node's timer lists (Node 20-24's linked list fields), whatever `_destroyed` says. */
function scheduled(timer: object): boolean {
  const next = ownValue(timer, '_idleNext');
  const prev = ownValue(timer, '_idlePrev');
  return (next !== null && next !== undefined) || (prev !== null && prev !== undefined);
}

/**
 * A one-shot timer of at most SOON_MS fires and ends by itself: fetch (undici) keeps a 1 s unref'd tick that
 * outlives an aborted request by up to a second. An interval, or a longer timeout, is a leak. Node 20's
 * Timeout fields (`_repeat`, `_idleTimeout`).
 */
const SOON_MS = 1000;
function firesSoon(resource: object): boolean {
  const t = resource as { _repeat?: unknown; _idleTimeout?: unknown };
  return typeof t._idleTimeout === 'number' && t._idleTimeout >= 0 && t._idleTimeout <= SOON_MS && (t._repeat === null || t._repeat === undefined);
}

/** Per kind, the larger of two counts of the same leaks seen two ways. */
export function mergeLeaks(a: ResourceCounts, b: ResourceCounts): ResourceCounts {
  const merged: ResourceCounts = { ...a };
  for (const [kind, n] of Object.entries(b)) merged[kind] = Math.max(merged[kind] ?? 0, n);
  return merged;
}
