/**
 * Connection counts in memory: the sockets each user and each address hold (connected or being
 * handshaked), against MAX_CONNECTIONS_PER_USER and MAX_CONNECTIONS_PER_IP. A claim checks both caps and
 * takes its slot with no await in between, so a burst of handshakes cannot pass one check together.
 */
import { CodedError } from '../../../protocol/errors.js';
import type { ConnectionCounts } from '../shared-state.js';

export interface ConnectionLimits {
  perUser: number;
  perIp: number;
}

export function createInProcessConnectionCounts(limits: ConnectionLimits): ConnectionCounts {
  const byUser = new Map<string, Set<string>>();
  const byIp = new Map<string, Set<string>>();

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
    async claim(socketId, userId, ip) {
      if ((byUser.get(userId)?.size ?? 0) >= limits.perUser) {
        throw new CodedError('RATE_LIMITED', `too many connections for this user (MAX_CONNECTIONS_PER_USER=${limits.perUser})`, { retryAfterSeconds: 5 });
      }
      if ((byIp.get(ip)?.size ?? 0) >= limits.perIp) {
        throw new CodedError('RATE_LIMITED', `too many connections from this address (MAX_CONNECTIONS_PER_IP=${limits.perIp})`, { retryAfterSeconds: 5 });
      }
      add(byUser, userId, socketId);
      add(byIp, ip, socketId);
      let released = false;
      return async () => {
        if (released) return;
        released = true;
        drop(byUser, userId, socketId);
        drop(byIp, ip, socketId);
      };
    },
  };
}
