/**
 * What a node of several needs of Redis (REDIS_URL set), built once by the composition root: the event bus,
 * the shared state and the node messages, over two connections (server/bus/redis/connections.ts): one for
 * commands and PUBLISH, one for the subscriptions.
 *
 * Each part connects in its own start() (the first to start connects both connections, waiting at most
 * `startupWaitMs` for Redis) and lets go of its part in its own stop(); `stop()` here closes the connections,
 * after the parts stopped.
 */
import type { Logger } from './logger.js';
import { createRedisConnections, type RedisConnections } from './bus/redis/connections.js';
import { createRedisNodeMessages } from './bus/redis/node-messages.js';
import { createRedisEventBus, type RedisEventBus } from './bus/redis/redis-bus.js';
import { createSubscriberChannels } from './bus/redis/subscriber-channels.js';
import type { NodeMessages } from './bus/node-messages.js';
import { createRedisSharedState, type RedisSharedStateConfig } from './shared/redis/index.js';
import type { SharedState } from './shared/shared-state.js';

export interface RedisClusterOptions {
  /** REDIS_URL. */
  url: string;
  /** REDIS_KEY_PREFIX: every key and channel starts with it. */
  keyPrefix: string;
  /** NODE_ID. */
  nodeId: string;
  /** How long start-up waits for an unreachable Redis (DB_STARTUP_WAIT_MS). */
  startupWaitMs: number;
  /** Caps, rates and NODE_LEASE_MS. */
  config: RedisSharedStateConfig;
  log: Logger;
}

export interface RedisCluster {
  bus: RedisEventBus;
  shared: SharedState;
  nodeMessages: NodeMessages;
  /** The two connections: their health (/readyz, atoll_redis_connected) and, for tests, the clients themselves. */
  connections: Pick<RedisConnections, 'command' | 'subscriber' | 'masked' | 'connected' | 'ping'>;
  /** Closes the connections; call it after the parts' stop(). */
  stop(): Promise<void>;
}

export function createRedisCluster(opts: RedisClusterOptions): RedisCluster {
  const log = opts.log;
  const connections = createRedisConnections({ url: opts.url, nodeId: opts.nodeId, startupWaitMs: opts.startupWaitMs, log });
  const channels = createSubscriberChannels(connections.subscriber, log);
  const common = { keyPrefix: opts.keyPrefix, nodeId: opts.nodeId, connect: () => connections.connect(), log };
  return {
    bus: createRedisEventBus({ ...common, publisher: connections.command, channels }),
    shared: createRedisSharedState({ ...common, redis: connections.command, config: opts.config }),
    nodeMessages: createRedisNodeMessages({ ...common, publisher: connections.command, channels }),
    connections,
    async stop() {
      channels.stop();
      await connections.close();
    },
  };
}
