/**
 * A connection pool per chat. fetch's shared pool keeps idle keep-alive sockets and their timers unref'd
 * between requests: they would outlive the run (the leak check counts unref'd handles, and retires the
 * thread) and carry one user's connections into the next run. Each chat gets its own pool of the same
 * undici class Node's fetch uses, closed when the chat ends.
 */

/** Where Node's fetch keeps its global dispatcher (undici's own convention). */
const GLOBAL_DISPATCHER = Symbol.for('undici.globalDispatcher.1');

interface Dispatcher {
  destroy(): Promise<void>;
}

/** Makes Node create its global dispatcher now (a data: URL, no network), so it is part of the thread's clean state. */
export async function settleFetch(): Promise<void> {
  await (await fetch('data:,')).arrayBuffer();
}

/** A fresh pool, or null if fetch has no dispatcher yet (settleFetch() was not called). */
export function openPool(): Dispatcher | null {
  const shared = (globalThis as Record<symbol, unknown>)[GLOBAL_DISPATCHER] as { constructor: new () => Dispatcher } | undefined;
  return shared ? new shared.constructor() : null;
}
