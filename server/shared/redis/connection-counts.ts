/**
 * Connection counts shared by every node: the sockets each user and each address hold anywhere, against
 * MAX_CONNECTIONS_PER_USER and MAX_CONNECTIONS_PER_IP.
 *
 * A Redis set per user (`<prefix>conns:user:<userId>`) and per address (`<prefix>conns:ip:<ip>`) holds a
 * member `<holder>:<socketId>` per slot (the holder: below). A claim is one Lua script (atomic: claims on any nodes that arrive
 * together are decided one by one): it checks both caps and adds both members, or refuses. Release removes
 * both members.
 *
 * A node that dies cannot release its slots, so each node keeps a lease key, `<prefix>conns:lease:<holder>`,
 * renewed every leaseMs / 3 with a PX expiry of leaseMs (NODE_LEASE_MS). The holder, `<nodeId>.<random>`, names this
 * process, not the node: a node restarted under the same NODE_ID (a stable name, as deploy/compose.yaml gives) renewed
 * its predecessor's lease, whose slots then counted for good (a user with sockets on a SIGKILLed node was refused at
 * every handshake on every node afterwards; tests/cluster/connection-slots-restart.test.ts). A claim that finds a set at its cap
 * drops the members of nodes whose lease lapsed before it counts again. The bound: a dead node's slots count
 * for at most NODE_LEASE_MS after its last renewal, and no longer than that against anyone's claim. (A set
 * whose members all belong to dead nodes stays in Redis until the next claim on it: a few bytes per user or
 * address.)
 *
 * A live node whose lease lapsed anyway (paused past it, cut off from Redis, or Redis restarted and lost
 * everything) may have had its slots dropped by others meanwhile: its next renewal sees the lease was gone
 * (SET … GET answers nothing) and adds every slot it holds again. Until then (at most leaseMs / 3 once Redis
 * answers) those sockets are not counted. A release that could not reach Redis is retried at each renewal.
 *
 * The script reads lease keys it is not given in KEYS: fine on one Redis server (what Atoll uses), not on a
 * Redis Cluster, where the keys would need one hash tag.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { CodedError } from '../../../protocol/errors.js';
import type { Logger } from '../../logger.js';
import type { ConnectionCounts } from '../shared-state.js';
import { asRedisUnavailable } from './unavailable.js';

/** KEYS: the user's set, the address's set. ARGV: the member, the per-user cap, the per-address cap, the lease key prefix. */
const CLAIM_LUA = `
local leases = {}
local function alive(node)
  if leases[node] == nil then leases[node] = redis.call('EXISTS', ARGV[4] .. node) == 1 end
  return leases[node]
end
local function room(key, cap)
  if redis.call('SCARD', key) < cap then return true end
  for _, member in ipairs(redis.call('SMEMBERS', key)) do
    local node = string.match(member, '^([^:]+):')
    if not node or not alive(node) then redis.call('SREM', key, member) end
  end
  return redis.call('SCARD', key) < cap
end
if not room(KEYS[1], tonumber(ARGV[2])) then return 1 end
if not room(KEYS[2], tonumber(ARGV[3])) then return 2 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
return 0
`;

interface ClaimCommand {
  atollClaimSlot(userKey: string, ipKey: string, member: string, perUser: number, perIp: number, leasePrefix: string): Promise<number>;
}

export interface RedisConnectionCountsOptions {
  redis: Redis;
  keyPrefix: string;
  nodeId: string;
  /** NODE_LEASE_MS: how long this node's slots outlive its last renewal. */
  leaseMs: number;
  limits: { perUser: number; perIp: number };
  log: Logger;
}

interface Slot {
  userKey: string;
  ipKey: string;
}

export function createRedisConnectionCounts(opts: RedisConnectionCountsOptions): ConnectionCounts & { start(): Promise<void>; stop(): Promise<void> } {
  const { redis, nodeId, leaseMs, limits, log } = opts;
  // This process (see the top): NODE_ID allows no ':', so the script still finds the holder before the first one.
  const holder = `${nodeId}.${randomBytes(6).toString('hex')}`;
  const leasePrefix = `${opts.keyPrefix}conns:lease:`;
  const leaseKey = `${leasePrefix}${holder}`;
  redis.defineCommand('atollClaimSlot', { numberOfKeys: 2, lua: CLAIM_LUA });
  const claimScript = redis as unknown as ClaimCommand;
  /** The slots this node holds, by member: added again if its lease lapsed. */
  const held = new Map<string, Slot>();
  /** Releases that could not reach Redis: retried at each renewal. */
  const unreleased = new Map<string, Slot>();
  let renewal: NodeJS.Timeout | null = null;
  let renewing = false;
  let failing = false;

  async function remove(member: string, slot: Slot): Promise<void> {
    try {
      await redis.multi().srem(slot.userKey, member).srem(slot.ipKey, member).exec();
      unreleased.delete(member);
    } catch {
      unreleased.set(member, slot);
    }
  }

  async function renew(): Promise<void> {
    try {
      const previous = await redis.set(leaseKey, '1', 'PX', leaseMs, 'GET');
      // The lease had lapsed: others may have dropped this node's slots meanwhile.
      if (previous === null && held.size > 0) {
        const again = redis.multi();
        for (const [member, slot] of held) again.sadd(slot.userKey, member).sadd(slot.ipKey, member);
        await again.exec();
        log.warn({ slots: held.size }, 'connection counts: this node\'s lease had lapsed; its slots were added again');
      }
      await Promise.all([...unreleased].map(([member, slot]) => remove(member, slot)));
      if (failing) log.info('connection counts: lease renewed again');
      failing = false;
    } catch (err) {
      if (!failing) log.warn({ err: String(err), lease_ms: leaseMs }, 'connection counts: cannot renew this node\'s lease in Redis; its slots lapse if this lasts');
      failing = true;
    }
  }

  return {
    async claim(socketId, userId, ip) {
      const member = `${holder}:${socketId}`;
      const slot: Slot = { userKey: `${opts.keyPrefix}conns:user:${userId}`, ipKey: `${opts.keyPrefix}conns:ip:${ip}` };
      const verdict: number = await claimScript.atollClaimSlot(slot.userKey, slot.ipKey, member, limits.perUser, limits.perIp, leasePrefix).catch((err: unknown) => {
        // Its outcome is unknown (Redis may still run it): undo it, after it on the same connection.
        void remove(member, slot);
        return asRedisUnavailable("this socket's connection slot cannot be counted across nodes; retry shortly")(err);
      });
      if (verdict === 1) throw new CodedError('RATE_LIMITED', `too many connections for this user (MAX_CONNECTIONS_PER_USER=${limits.perUser})`, { retryAfterSeconds: 5 });
      if (verdict === 2) throw new CodedError('RATE_LIMITED', `too many connections from this address (MAX_CONNECTIONS_PER_IP=${limits.perIp})`, { retryAfterSeconds: 5 });
      held.set(member, slot);
      let released = false;
      return async () => {
        if (released) return;
        released = true;
        // Forgotten first: a renewal from now on does not add it again.
        held.delete(member);
        await remove(member, slot);
      };
    },
    async start() {
      if (renewal) return;
      await redis.set(leaseKey, '1', 'PX', leaseMs);
      renewal = setInterval(() => {
        // One at a time: a renewal waiting on a stuck Redis is not joined by the next.
        if (renewing) return;
        renewing = true;
        void renew().finally(() => (renewing = false));
      }, Math.max(100, Math.floor(leaseMs / 3)));
      renewal.unref();
    },
    async stop() {
      if (renewal) clearInterval(renewal);
      renewal = null;
      // Sockets still counted now are gone with this node: dropped at the next claim that needs their room.
      await redis.del(leaseKey).catch(() => undefined);
    },
  };
}
