/**
 * The DNS resolver's sockets, counted against the thread's open files (RUN_OPEN_FILES, fd-guards.ts). A resolver's
 * channel (c-ares) opens sockets of its own to its servers while it has queries pending and closes them when none
 * are left; they pass through none of the socket handles the descriptor wall counts. helper-71 held 3,001
 * descriptors in a cell with `dns.Resolver`s, each with one query to a server that never answers. Measured here:
 * 50 Resolvers with one query each to a silent server held 50 descriptors; one Resolver with 100 queries to it, 1.
 *
 * So a channel counts, while queries are pending, one socket per query up to two per server (a truncated answer is
 * asked again over TCP). A channel's servers cannot change while it has queries pending (c-ares refuses), so they
 * are read at its first. A query past the budget fails with EMFILE, as a socket's would. `dns.lookup` is not a
 * channel's: it asks the system's resolver from the libuv thread pool, whose few threads bound its sockets.
 */
type AnyFunction = (...args: unknown[]) => unknown;

// Taken at load, before any agent module (with THREAD_LOCKDOWN=0 agent code could replace them later).
const apply = Reflect.apply;
const define = Reflect.defineProperty;
const uncurry = <A extends unknown[], R>(f: (...args: A) => R) => Function.prototype.call.bind(f) as unknown as (self: object, ...args: A) => R;
const weakGet = uncurry(WeakMap.prototype.get);
const weakSet = uncurry(WeakMap.prototype.set);

export interface ResolverSockets {
  /** Sockets the thread's resolvers hold now (by the count above). */
  held(): number;
}

interface Channel {
  pending: number;
  servers: number;
}

/** Sockets a channel holds with `pending` queries. */
const socketsOf = (channel: Channel) => (channel.pending < 2 * channel.servers ? channel.pending : 2 * channel.servers);

/**
 * Wraps the channel's native query members (`queryA`, …, `getHostByAddr`: each takes its request object first and
 * calls the request's `oncomplete` once answered, cancelled or timed out). `full()` says the thread's budget is
 * spent; `refused` is the error code a query past it returns (libuv's EMFILE, negative).
 */
export function countResolverSockets(channelProto: object, budget: { full: () => boolean; onLimit: () => void; refused: number }, refuse: (what: string) => never): ResolverSockets {
  const proto = channelProto as Record<string, AnyFunction>;
  const getServers = proto.getServers!;
  const channels = new WeakMap<object, Channel>();
  let held = 0;
  for (const name of Object.getOwnPropertyNames(proto)) {
    if (!(name.startsWith('query') || name === 'getHostByAddr') || typeof proto[name] !== 'function') continue;
    const original = proto[name]!;
    Object.defineProperty(proto, name, {
      value: function countedQuery(this: object, ...args: unknown[]) {
        const req = args[0];
        // Not a request object: the native member refuses it as it would unwrapped.
        if (typeof req !== 'object' || req === null) return apply(original, this, args);
        let channel = weakGet(channels, this);
        if (channel === undefined) {
          channel = { pending: 0, servers: 0 };
          // Throws (before any count) if `this` is no channel.
          const servers = apply(getServers, this, []) as unknown[];
          channel.servers = servers.length;
          weakSet(channels, this, channel);
        } else if (channel.pending === 0) {
          channel.servers = (apply(getServers, this, []) as unknown[]).length;
        }
        const before = socketsOf(channel);
        if (socketsOf({ pending: channel.pending + 1, servers: channel.servers }) > before && budget.full()) {
          budget.onLimit();
          return budget.refused;
        }
        const counted = channel;
        counted.pending++;
        held += socketsOf(counted) - before;
        let settled = false;
        const settle = () => {
          if (settled) return;
          settled = true;
          const was = socketsOf(counted);
          counted.pending--;
          held -= was - socketsOf(counted);
        };
        // The answer comes through the request's `oncomplete`, read when it comes: an accessor, so one set later
        // is still the one called, after the count is settled.
        let oncomplete = (req as { oncomplete?: unknown }).oncomplete;
        const watched = define(req, 'oncomplete', {
          get: () =>
            function answered(this: unknown, ...answer: unknown[]) {
              settle();
              return typeof oncomplete === 'function' ? apply(oncomplete as AnyFunction, this, answer) : undefined;
            },
          set: (value: unknown) => {
            oncomplete = value;
          },
          configurable: true,
          enumerable: true,
        });
        if (!watched) {
          settle();
          return refuse(`a DNS query (${name}) whose request cannot be watched`);
        }
        let result: unknown;
        try {
          result = apply(original, this, args);
        } catch (err) {
          settle();
          throw err;
        }
        // A query that failed at once gets no answer.
        if (result !== 0 && result !== undefined) settle();
        return result;
      },
      writable: true,
      configurable: true,
      enumerable: true,
    });
  }
  return { held: () => held };
}
