/**
 * async_hooks hands out the objects behind callbacks: inside a MessagePort's 'message' callback (an AbortSignal
 * listener run by the cell's stop, say) `executionAsyncResource()` is that port, and a hook's `init` is handed every
 * port the thread receives, its run's included; a `before` hook sees Piscina's own port as the resource of every
 * task it delivers. The run's port carries the worker's word to its cell (events, the outcome, the report),
 * Piscina's its task answers: code holding either could speak for the worker runtime. So a MessagePort never
 * reaches agent code through async_hooks: it gets a stand-in object of its own instead (the same one each time,
 * so libraries that keep their context on the resource, as AsyncLocalStorage does, work as before). The cell
 * checks every message anyway (workers/cell/run-port-check.ts): this keeps the ports from being a tool at all.
 * Installed before any agent module loads; the original `createHook` is returned for the worker's own handle
 * tracker, which needs the real resources.
 */
import asyncHooks, { type HookCallbacks } from 'node:async_hooks';
import { syncBuiltinESMExports } from 'node:module';
import { types } from 'node:util';
import { MessagePort } from 'node:worker_threads';
import { pin } from './host-guards.js';

export function guardAsyncHooks(): { createHook: typeof asyncHooks.createHook; executionAsyncResource: () => object } {
  const createHook = asyncHooks.createHook;
  const executionAsyncResource = asyncHooks.executionAsyncResource;
  const getPrototypeOf = Reflect.getPrototypeOf;
  const portPrototype = MessagePort.prototype;
  const standIns = new WeakMap<object, object>();
  const standInFor = (resource: object): object => {
    let standIn = standIns.get(resource);
    if (!standIn) standIns.set(resource, (standIn = {}));
    return standIn;
  };
  const shown = (resource: unknown): unknown =>
    resource !== null && typeof resource === 'object' && getPrototypeOf(resource) === portPrototype ? standInFor(resource) : resource;

  pin(asyncHooks, 'executionAsyncResource', () => shown(executionAsyncResource()));
  // Each callback is read once, into an object of the guard's own: Node never reads the caller's object (a getter
  // could answer differently the second time and hand Node an unguarded `init`).
  pin(asyncHooks, 'createHook', (callbacks: HookCallbacks) => {
    const read = (name: keyof HookCallbacks): ((...args: never[]) => unknown) | undefined => {
      const fn = (callbacks as Record<string, unknown> | null | undefined)?.[name];
      return typeof fn === 'function' ? (fn as (...args: never[]) => unknown).bind(callbacks) : undefined;
    };
    const init = read('init') as HookCallbacks['init'];
    const own: HookCallbacks = {};
    if (init) own.init = (asyncId, type, triggerAsyncId, resource) => init(asyncId, type, triggerAsyncId, shown(resource) as object);
    for (const name of ['before', 'after', 'destroy', 'promiseResolve'] as const) {
      const fn = read(name);
      if (fn) own[name] = fn as (asyncId: number) => void;
    }
    return createHook(own);
  });
  guardAsyncLocalStorage(asyncHooks);
  guardEmitDestroy(asyncHooks);
  // process._getActiveHandles() lists the owner of every ref'd handle: the run's port (it listens for the cell's
  // stop) and Piscina's task port are among them. Filtered without calling anything agent code could replace.
  const getActiveHandles = (process as unknown as { _getActiveHandles?: () => unknown[] })._getActiveHandles;
  if (typeof getActiveHandles === 'function') {
    const original = getActiveHandles.bind(process);
    pin(
      process,
      '_getActiveHandles',
      () => {
        const all = original();
        const kept: unknown[] = [];
        for (let i = 0; i < all.length; i++) if (shown(all[i]) === all[i]) kept[kept.length] = all[i];
        return kept;
      },
      false,
    );
  }
  // ES modules importing { createHook } or { executionAsyncResource } from 'node:async_hooks' get the guarded ones.
  syncBuiltinESMExports();
  return { createHook, executionAsyncResource };
}

/**
 * Node 20's and 22's AsyncLocalStorage rides on a hook of Node's own, which hands every new resource (ports included)
 * and the current one (Piscina's port while it delivers a task) to `store._propagate` of every enabled store. An
 * agent's store could shadow `_propagate` on itself, or a made-up object with the prototype could be enabled. So
 * every store made gets the prototype's `_propagate` as a fixed property of its own, and `_enable` enables only
 * stores made so. (Node 24's stores, on AsyncContextFrame, have neither: nothing to guard.)
 */
function guardAsyncLocalStorage(hooks: typeof asyncHooks): void {
  const Original = hooks.AsyncLocalStorage;
  const proto = Original.prototype as unknown as Record<string, unknown>;
  const propagate = proto._propagate;
  const enable = proto._enable;
  if (typeof propagate !== 'function' || typeof enable !== 'function') return;
  const made = new WeakSet<object>();
  const defineProperty = Object.defineProperty;
  const Guarded = new Proxy(Original, {
    construct(target, args, newTarget) {
      const store = Reflect.construct(target, args, newTarget) as object;
      defineProperty(store, '_propagate', { value: propagate, writable: false, configurable: false, enumerable: false });
      made.add(store);
      return store;
    },
  });
  pin(proto, '_enable', function _enable(this: object) {
    if (!made.has(this)) throw new TypeError('AsyncLocalStorage: not a store made by its constructor');
    return (enable as () => unknown).call(this);
  }, false);
  // The prototype names the guarded class, so `store.constructor` does not lead back to the original.
  pin(proto, 'constructor', Guarded, false);
  pin(hooks, 'AsyncLocalStorage', Guarded);
}

/**
 * `AsyncResource`'s `emitDestroy` hands Node's destroy queue whatever its `this` carries as an async id: anything but
 * a number fails a CHECK there, which aborts the whole cell (helper-74: `emitDestroy.call({})`, one line). So it
 * runs only for an object (not a proxy) whose id is an own data property holding a positive number: the value Node
 * reads next is the one checked here.
 */
function guardEmitDestroy(hooks: typeof asyncHooks): void {
  const proto = hooks.AsyncResource.prototype as unknown as Record<string, unknown>;
  const emitDestroy = proto.emitDestroy;
  const idSymbol = Object.getOwnPropertySymbols(new hooks.AsyncResource('ATOLL_PROBE')).find((s) => s.description === 'async_id_symbol');
  if (typeof emitDestroy !== 'function' || !idSymbol) throw new Error("the async_hooks guard does not know this Node version's AsyncResource");
  const apply = Reflect.apply;
  const ownDescriptor = Reflect.getOwnPropertyDescriptor;
  const isProxy = types.isProxy;
  pin(proto, 'emitDestroy', function emitDestroyChecked(this: unknown) {
    const held = this !== null && typeof this === 'object' && !isProxy(this) ? ownDescriptor(this, idSymbol) : undefined;
    const id = held && 'value' in held ? held.value : undefined;
    if (typeof id !== 'number' || !(id > 0)) throw new TypeError('AsyncResource.emitDestroy: not a resource with an async id of its own');
    return apply(emitDestroy, this, []);
  }, false);
}
