/**
 * REDIS_URL with its password in the query string (redis://host:6379/0?password=…, which ioredis reads like the
 * userinfo's): the nodes connect with it, and neither the log lines nor the masked URL carry it.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createLogger } from '../../server/logger';
import { createRedisConnections } from '../../server/bus/redis/connections';
import { freePort } from '../../scripts/cluster/nodes';

const SECRET = 'S3cretPass-in-query';

test('a password in REDIS_URL query string: connected with, never logged', async () => {
  const port = await freePort();
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--requirepass', SECRET, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const lines: string[] = [];
  const connections = createRedisConnections({
    url: `redis://127.0.0.1:${port}/0?password=${SECRET}`,
    nodeId: 'n',
    startupWaitMs: 10_000,
    log: createLogger('info', {}, { write: (line) => lines.push(line) }),
  });
  try {
    await connections.connect();
    await connections.ping();
    expect(lines.join('\n')).toContain('Redis connection ready');
    expect(lines.join('\n')).not.toContain(SECRET);
    expect(connections.masked).not.toContain(SECRET);
    expect(connections.masked).toContain('password=***');
  } finally {
    await connections.close();
    redis.kill('SIGKILL');
    await once(redis, 'exit');
  }
});
