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
import { MessagePort } from 'node:worker_threads';
import { pin } from './host-guards.js';

export function guardAsyncHooks(): { createHook: typeof asyncHooks.createHook } {
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
  pin(asyncHooks, 'createHook', (callbacks: HookCallbacks) => {
    const init = callbacks?.init;
    if (typeof init !== 'function') return createHook(callbacks);
    return createHook({
      init: (asyncId, type, triggerAsyncId, resource) => init.call(callbacks, asyncId, type, triggerAsyncId, shown(resource) as object),
      before: callbacks.before?.bind(callbacks),
      after: callbacks.after?.bind(callbacks),
      destroy: callbacks.destroy?.bind(callbacks),
      promiseResolve: callbacks.promiseResolve?.bind(callbacks),
    });
  });
  // ES modules importing { createHook } or { executionAsyncResource } from 'node:async_hooks' get the guarded ones.
  syncBuiltinESMExports();
  return { createHook };
}
