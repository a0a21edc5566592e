/**
 * Freezes what every run of a worker shares, before any agent module loads: SES `lockdown()` for
 * the JavaScript intrinsics, then the host objects Node puts in every run's reach (MessagePort, which
 * carries every run's events and answer; EventTarget; EventEmitter and the streams and sockets built on it;
 * Buffer; the worker_threads exports; process.emit and process.nextTick). Afterwards a patch of any of them
 * is a TypeError in the patching run (strict code) or silently ignored (sloppy code), so it cannot reach a
 * later run. Module-level state of agents and their dependencies is not covered: that is what
 * THREAD_REUSE=same_user is for.
 */
import events from 'node:events';
import net from 'node:net';
import path from 'node:path';
import stream from 'node:stream';
import workerThreads from 'node:worker_threads';

interface SesGlobals {
  lockdown(options: Record<string, string>): void;
  harden<T>(value: T): T;
}

/**
 * SES's options, checked here on Node 20.20: errors keep their stacks and own properties (`unsafe`),
 * console stays Node's, a frozen method can still be overridden on an instance (`severe`: the "override
 * mistake" breaks libraries that assign `obj.toString = …`), stacks are not trimmed (debugging runs), and
 * SES prints nothing to stdout (the cell parses the worker's log lines).
 */
const LOCKDOWN_OPTIONS = {
  errorTaming: 'unsafe',
  overrideTaming: 'severe',
  consoleTaming: 'unsafe',
  stackFiltering: 'verbose',
  // Node's `domain` module is not used here; SES's check would refuse to lock down if it were.
  domainTaming: 'safe',
  reporting: 'none',
  // Keeps the worker's own eval and Function: Piscina, ajv and Prisma compile code with them.
  evalTaming: 'unsafe-eval',
  // Keeps an unhandled rejection Node's business (the worker's own handlers), not SES's.
  unhandledRejectionTrapping: 'none',
};

/**
 * A data property of a host prototype becomes an accessor: reads give the original value, an assignment
 * on an instance defines the instance's own property (as before), an assignment on the prototype itself
 * throws. This is SES's `severe` override taming, applied to host objects SES does not know.
 */
function tameOverrides(proto: object): void {
  for (const key of Reflect.ownKeys(proto)) {
    const d = Reflect.getOwnPropertyDescriptor(proto, key)!;
    if (!d.configurable) continue;
    if (!('value' in d)) {
      Object.defineProperty(proto, key, { configurable: false });
      continue;
    }
    const value: unknown = d.value;
    Object.defineProperty(proto, key, {
      get: () => value,
      set(this: object, v: unknown) {
        if (this === proto) throw new TypeError(`Cannot assign to read only property '${String(key)}' of a shared host prototype`);
        Object.defineProperty(this, key, { value: v, writable: true, enumerable: true, configurable: true });
      },
      enumerable: d.enumerable,
      configurable: false,
    });
  }
}

/**
 * EventEmitter.prototype holds a non-configurable, writable `kCapture` that every constructor writes on its
 * instance: a full freeze would break every emitter. So these prototypes (up to the frozen intrinsics) get
 * their members locked and no new ones, and that one field stays writable.
 */
function lockChain(proto: object | null): void {
  while (proto !== null && !Object.isFrozen(proto)) {
    tameOverrides(proto);
    Object.preventExtensions(proto);
    proto = Object.getPrototypeOf(proto) as object | null;
  }
}

/** Makes own methods of an object that cannot be frozen (process) impossible to replace. */
function pinMethods(obj: object, keys: string[]): void {
  for (const key of keys) {
    const d = Reflect.getOwnPropertyDescriptor(obj, key);
    // An inherited method is pinned as an own property, or an assignment would shadow it.
    if (!d || d.configurable) Object.defineProperty(obj, key, { value: Reflect.get(obj, key), writable: false, enumerable: d?.enumerable ?? false, configurable: false });
  }
}

export interface FreezeReport {
  lockdownMs: number;
}

/** Call once, first thing in the worker, before any other module of the worker's graph runs agent code. */
export function freezeShared(): FreezeReport {
  const started = performance.now();
  // SES's minified build of the same version: V8 keeps a module's source for as long as its functions live, and
  // ses.cjs (with a few non-Latin-1 characters, so stored two bytes a character) is ~1 MiB of every worker's
  // heap; the minified one is less than half of it (~0.7 MiB PSS per worker). Not in SES's exports map, hence the path.
  require(path.join(path.dirname(require.resolve('ses')), 'ses.umd.min.js'));
  const ses = globalThis as unknown as SesGlobals;
  ses.lockdown(LOCKDOWN_OPTIONS);
  // harden exists only once lockdown has run.
  const harden = ses.harden;
  // Whole graphs frozen: the run's port (every event and answer) and the DOM-style event classes.
  for (const proto of [workerThreads.MessagePort.prototype, EventTarget.prototype, Event.prototype]) {
    tameOverrides(proto);
    harden(proto);
  }
  for (const proto of [events.EventEmitter.prototype, stream.Stream.prototype, stream.Readable.prototype, stream.Writable.prototype, stream.Duplex.prototype, net.Socket.prototype, net.Server.prototype]) lockChain(proto);
  tameOverrides(Buffer.prototype);
  harden(Buffer);
  // Node defines some exports lazily through getters that replace themselves: read them all, then freeze.
  for (const key of Object.keys(workerThreads)) void (workerThreads as Record<string, unknown>)[key];
  Object.freeze(workerThreads);
  pinMethods(process, ['emit', 'nextTick']);
  return { lockdownMs: performance.now() - started };
}
