/**
 * Redis for the bench's clusters: every cluster gets a fresh REDIS_KEY_PREFIX (atoll-bench-<random>:) on the
 * server of --redis, and its keys are removed when it stops. Pub/sub channels hold nothing, so keys are all there
 * is to remove. Through Atoll's own connections (server/bus/redis/connections.ts), since only that folder may load
 * the Redis driver.
 */
import { randomBytes } from 'node:crypto';
import { createRedisConnections } from '../../server/bus/redis/connections.js';
import { createLogger } from '../../server/logger.js';

export interface RedisScratch {
  /** REDIS_URL and REDIS_KEY_PREFIX for the nodes. */
  env: Record<string, string>;
  /** Removes every key under the prefix. */
  drop(): Promise<void>;
}

export interface RedisScratches {
  url: string;
  scratch(): Promise<RedisScratch>;
}

const CONNECT_WAIT_MS = 5000;

async function withRedis<T>(url: string, use: (command: ReturnType<typeof createRedisConnections>['command']) => Promise<T>): Promise<T> {
  const redis = createRedisConnections({ url, nodeId: 'bench', startupWaitMs: CONNECT_WAIT_MS, log: createLogger('silent') });
  try {
    await redis.connect();
    return await use(redis.command);
  } finally {
    await redis.close();
  }
}

export function redisScratches(url: string): RedisScratches {
  return {
    url,
    async scratch() {
      const prefix = `atoll-bench-${randomBytes(5).toString('hex')}:`;
      try {
        await withRedis(url, (r) => r.ping());
      } catch (err) {
        throw new RedisUnusableError(`cannot use Redis at ${url} (--redis): ${(err as Error).message}`);
      }
      return {
        env: { REDIS_URL: url, REDIS_KEY_PREFIX: prefix },
        drop: () =>
          withRedis(url, async (r) => {
            // SCAN, not KEYS: the server may hold other prefixes' keys (other clusters, the tests).
            for (let cursor = '0'; ; ) {
              const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
              if (keys.length) await r.unlink(...keys);
              cursor = next;
              if (cursor === '0') return;
            }
          }),
      };
    },
  };
}

export class RedisUnusableError extends Error {
  override name = 'RedisUnusableError';
}
