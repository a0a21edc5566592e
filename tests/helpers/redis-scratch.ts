/**
 * Redis for the Redis tests (tests/redis/): the server of ATOLL_TEST_REDIS (default redis://127.0.0.1:6379),
 * a key prefix of each test's own (`atoll_t_<jest run id>_<random>:`) and the removal of its keys (SCAN + DEL)
 * at the end; plus an admin connection to look at Redis and to cut a node's connection (CLIENT KILL).
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { createLogger } from '../../server/logger';
import { createRedisCluster, type RedisCluster } from '../../server/redis-cluster';
import type { RedisSharedStateConfig } from '../../server/shared/redis/index';

export const TEST_REDIS_URL = process.env.ATOLL_TEST_REDIS || 'redis://127.0.0.1:6379';

const RUN_ID = (process.env.ATOLL_TEST_RUN_ID || `p${process.pid}`).toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 12);

/** A key prefix nothing else uses. */
export function scratchPrefix(): string {
  return `atoll_t_${RUN_ID}_${randomBytes(4).toString('hex')}:`;
}

/** A plain connection for the test itself; the caller quits it. */
export function adminConnection(): Redis {
  return new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
}

/** Deletes every key under `prefix`. */
export async function dropPrefix(admin: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) await admin.del(...keys);
  } while (cursor !== '0');
}

/** Closes the connection named `name` (CLIENT SETNAME) from the server's side, as a network cut would. */
export async function killConnection(admin: Redis, name: string): Promise<void> {
  const list = (await admin.client('LIST')) as string;
  const ids = list
    .split('\n')
    .filter((line) => line.includes(` name=${name} `))
    .map((line) => /\bid=(\d+)/.exec(line)![1]);
  if (ids.length !== 1) throw new Error(`expected one connection named ${name}, found ${ids.length}`);
  await admin.client('KILL', 'ID', ids[0]);
}

export const TEST_LIMITS: RedisSharedStateConfig = {
  rateLimits: { user: { rate: 20, burst: 40 }, ip: { rate: 50, burst: 100 }, authFailures: { rate: 1 / 60, burst: 3 } },
  maxConnectionsPerUser: 3,
  maxConnectionsPerIp: 5,
  nodeLeaseMs: 10_000,
};

/** One node's Redis parts, started, on `prefix`; stop them with stopNode. */
export async function startNode(prefix: string, nodeId: string, config: Partial<RedisSharedStateConfig> = {}, url = TEST_REDIS_URL): Promise<RedisCluster> {
  const node = createRedisCluster({ url, keyPrefix: prefix, nodeId, startupWaitMs: 10_000, config: { ...TEST_LIMITS, ...config }, log: createLogger('silent') });
  await node.bus.start();
  await node.shared.start();
  await node.nodeMessages.start();
  return node;
}

export async function stopNode(node: RedisCluster): Promise<void> {
  await node.bus.stop();
  await node.shared.stop();
  await node.nodeMessages.stop();
  await node.stop();
}
