/**
 * Connection slots, claimed during the handshake rather than counted after it: socket.io runs a
 * handshake's middleware for every CONNECT packet (150 can arrive in one long-polling POST) before any of
 * them is connected, so a count of connected sockets lets a burst pass together. A slot is held from the
 * claim until the socket disconnects or its transport closes, whichever comes first.
 */
import { CodedError } from '../../protocol/errors.js';

export interface ConnectionLimits {
  perUser: number;
  perIp: number;
}

export function createConnectionSlots(limits: ConnectionLimits) {
  const byUser = new Map<string, Set<string>>();
  const byIp = new Map<string, Set<string>>();
  /** engine.io connections that already carry a socket (being handshaked or connected): one each. */
  const engines = new WeakSet<object>();
  let held = 0;

  const add = (map: Map<string, Set<string>>, key: string, id: string) => {
    const set = map.get(key) ?? new Set<string>();
    set.add(id);
    map.set(key, set);
  };
  const drop = (map: Map<string, Set<string>>, key: string, id: string) => {
    const set = map.get(key);
    set?.delete(id);
    if (set && set.size === 0) map.delete(key);
  };

  return {
    /**
     * Claims a slot for socket `id` of `userId` from `ip` over the engine.io connection `engine`, or throws
     * (BAD_REQUEST for a second socket on one connection, RATE_LIMITED over a cap). Returns the release,
     * safe to call more than once.
     */
    claim(id: string, userId: string, ip: string, engine: object): () => void {
      if (engines.has(engine)) throw new CodedError('BAD_REQUEST', 'this connection already has a socket; open one socket per connection');
      if ((byUser.get(userId)?.size ?? 0) >= limits.perUser) {
        throw new CodedError('RATE_LIMITED', `too many connections for this user (MAX_CONNECTIONS_PER_USER=${limits.perUser})`, { retryAfterSeconds: 5 });
      }
      if ((byIp.get(ip)?.size ?? 0) >= limits.perIp) {
        throw new CodedError('RATE_LIMITED', `too many connections from this address (MAX_CONNECTIONS_PER_IP=${limits.perIp})`, { retryAfterSeconds: 5 });
      }
      engines.add(engine);
      add(byUser, userId, id);
      add(byIp, ip, id);
      held++;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        engines.delete(engine);
        drop(byUser, userId, id);
        drop(byIp, ip, id);
        held--;
      };
    },
    /** Slots held: sockets connected or being handshaked. */
    get held() {
      return held;
    },
  };
}

export type ConnectionSlots = ReturnType<typeof createConnectionSlots>;
