/**
 * Counts the handles a run opened and did not close, unref'd ones included: process.getActiveResourcesInfo()
 * lists only ref'd handles, so a server or an interval the run unref'd would outlive it unseen. An
 * async_hooks init/destroy pair sees every handle, ref'd or not; it is enabled only while a run executes,
 * since with an init hook V8 reports every promise too (~2.5-4 µs each; README, Containment).
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
  /** Handles created since start() and not destroyed yet, by kind. Keeps counting until stop(). */
  open(): ResourceCounts;
  stop(): void;
}

/**
 * `createHook`: async_hooks' own (not the guarded one agent code gets), so `exclude` can name real resources.
 * `getAsyncId`: AsyncWrap's native one (socket-handles.ts). A native handle counts until its wrap is freed, whatever
 * destroys are emitted: agent code can emit one for any id (`AsyncResource`'s `emitDestroy` on an object carrying
 * that id: helper-73 hid its open handles from the count so), and Node's http Agent gives a reused keep-alive
 * socket a new id (destroy for the old, init for the new with a plain object), so the handle is looked at itself.
 * A timer counts until Node marks it destroyed; any other resource until its destroy.
 */
export function createHandleTracker(createHook: typeof CreateHook, getAsyncId: (this: object) => number): HandleTracker {
  const live = new Map<number, { type: string; kind: string; resource: object }>();
  /** Whether a tracked resource has ended, at its destroy. */
  const ended = (type: string, resource: object): boolean => {
    if (type === 'Timeout') return (resource as { _destroyed?: unknown })._destroyed === true;
    return wrapFreed(getAsyncId, resource) !== false;
  };
  const hook = createHook({
    init(asyncId, type, _triggerAsyncId, resource) {
      const kind = HANDLE_KINDS[type];
      // An id already live keeps its first resource: `asyncReset` on a native handle emits init again for an id the
      // caller chooses, with an object of its own, which would then answer for the handle (helper-74).
      if (kind && !live.has(asyncId)) live.set(asyncId, { type, kind, resource });
    },
    destroy(asyncId) {
      const entry = live.get(asyncId);
      if (entry && ended(entry.type, entry.resource)) live.delete(asyncId);
    },
  });
  return {
    start() {
      live.clear();
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
    stop() {
      hook.disable();
      live.clear();
    },
  };
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
