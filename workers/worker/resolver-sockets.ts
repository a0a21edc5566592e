/**
 * The DNS resolver's sockets, counted against the thread's open files (RUN_OPEN_FILES, fd-guards.ts). A resolver's
 * channel (c-ares) opens sockets of its own to its servers while it has queries pending; they pass through none of
 * the socket handles the descriptor wall counts. helper-71 held 3,001 descriptors in a cell with `dns.Resolver`s,
 * each with one query to a server that never answers. c-ares shares a socket among a channel's queries at first,
 * but each query asked again after a try timed out gets one of its own (helper-73: one Resolver, 2,000 queries,
 * 2,000 descriptors). So each pending query counts one socket, from its native call until the query is over.
 *
 * "Over" is read from the request itself, not from its `oncomplete`: agent code can call that (helper-73 settled
 * the count that way and kept every socket). A pending request is a live native wrap; once c-ares is done with it,
 * its wrap is freed and its native `getAsyncId` answers -1, which agent code cannot bring about sooner. Requests are
 * looked at when the count is read. A query past the budget fails with EMFILE, as a socket's would. `dns.lookup` is
 * not a channel's: it asks the system's resolver from the libuv thread pool, whose four threads bound its sockets.
 */
import { wrapFreed } from './socket-handles.js';

type AnyFunction = (...args: unknown[]) => unknown;

// Taken at load, before any agent module (with THREAD_LOCKDOWN=0 agent code could replace them later).
const apply = Reflect.apply;
const define = Reflect.defineProperty;

export interface ResolverSockets {
  /** Sockets the thread's resolvers hold now: their queries still pending. */
  held(): number;
}

/**
 * Wraps the channel's native query members (`queryA`, …, `getHostByAddr`: each takes its request first).
 * `getAsyncId`: AsyncWrap's own (socket-handles.ts). `full()` says the thread's budget is spent; `refused` is the
 * error code a query past it returns (libuv's EMFILE, negative); `refuse` throws the wall's refusal.
 */
export function countResolverSockets(channelProto: object, getAsyncId: (this: object) => number, budget: { full: () => boolean; onLimit: () => void; refused: number }, refuse: (what: string) => never): ResolverSockets {
  const proto = channelProto as Record<string, AnyFunction>;
  /** Requests of queries made and not known to be over. Only indexes below its length are written or read. */
  const pending: object[] = [];
  // Not a native request: it holds nothing.
  const isOver = (req: object): boolean => wrapFreed(getAsyncId, req) !== false;
  /** When `pending` is next looked through as a query is made: finished requests are dropped even when nothing reads the count (RUN_OPEN_FILES=0). */
  let pruneAt = 64;
  const held = (): number => {
    let kept = 0;
    for (let i = 0; i < pending.length; i++) {
      const req = pending[i]!;
      if (!isOver(req)) pending[kept++] = req;
    }
    pending.length = kept;
    return kept;
  };
  for (const name of Object.getOwnPropertyNames(proto)) {
    if (!(name.startsWith('query') || name === 'getHostByAddr') || typeof proto[name] !== 'function') continue;
    const original = proto[name]!;
    Object.defineProperty(proto, name, {
      value: function countedQuery(this: object, ...args: unknown[]) {
        const req = args[0];
        // A request already in a query: a second query would take its wrap's place, and freeing that one would
        // make the first look over while its socket stays (helper-74). Node makes a fresh request for each query.
        if (typeof req === 'object' && req !== null && !isOver(req)) return refuse(`a DNS query (${name}) on a request already in use`);
        if (budget.full()) {
          budget.onLimit();
          return budget.refused;
        }
        const result = apply(original, this, args);
        if (pending.length >= pruneAt) pruneAt = 2 * held() + 64;
        // Defined, not assigned: an assignment past the end would call a setter agent code put on Array.prototype.
        if (typeof req === 'object' && req !== null && !isOver(req)) define(pending, pending.length, { value: req, writable: true, enumerable: true, configurable: true });
        return result;
      },
      writable: true,
      configurable: true,
      enumerable: true,
    });
  }
  return { held };
}
