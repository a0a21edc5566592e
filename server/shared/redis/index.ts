/**
 * The shared state of several nodes, in Redis: tickets, rate limits and connection counts are cluster-wide
 * (each file says how it stays atomic). Accepting stays the in-process one: it only spares the store a race
 * between duplicates on one node; across nodes, idempotency rests on the store's unique key on
 * (user, correlation_id) (see Accepting in ../shared-state.ts).
 *
 * Keys: `<prefix>ticket:…`, `<prefix>rl:<limit>:…`, `<prefix>conns:…` (REDIS_KEY_PREFIX). start() connects
 * (shared with the other Redis parts) and starts renewing this node's connection lease; stop() ends it.
 */
import type { Redis } from 'ioredis';
import type { Config } from '../../config.js';
import type { Logger } from '../../logger.js';
import { createAccepting } from '../in-process/accepting.js';
import type { SharedState } from '../shared-state.js';
import { createRedisConnectionCounts } from './connection-counts.js';
import { createRedisRateLimiter } from './rate-limiter.js';
import { createRedisTickets } from './tickets.js';

export type RedisSharedStateConfig = Pick<Config, 'rateLimits' | 'maxConnectionsPerUser' | 'maxConnectionsPerIp' | 'nodeLeaseMs'>;

export interface RedisSharedStateOptions {
  /** The command connection. */
  redis: Redis;
  keyPrefix: string;
  nodeId: string;
  config: RedisSharedStateConfig;
  /** Connects the connections (shared with the other Redis parts). */
  connect: () => Promise<void>;
  log: Logger;
}

export function createRedisSharedState(opts: RedisSharedStateOptions): SharedState {
  const { redis, keyPrefix, config } = opts;
  const connections = createRedisConnectionCounts({
    redis,
    keyPrefix,
    nodeId: opts.nodeId,
    leaseMs: config.nodeLeaseMs,
    limits: { perUser: config.maxConnectionsPerUser, perIp: config.maxConnectionsPerIp },
    log: opts.log,
  });
  return {
    tickets: createRedisTickets(redis, keyPrefix),
    limits: {
      user: createRedisRateLimiter(redis, config.rateLimits.user, `${keyPrefix}rl:user`),
      ip: createRedisRateLimiter(redis, config.rateLimits.ip, `${keyPrefix}rl:ip`),
      authFailures: createRedisRateLimiter(redis, config.rateLimits.authFailures, `${keyPrefix}rl:auth-failures`),
    },
    connections,
    accepting: createAccepting(),
    async start() {
      await opts.connect();
      await connections.start();
    },
    async stop() {
      await connections.stop();
    },
  };
}
