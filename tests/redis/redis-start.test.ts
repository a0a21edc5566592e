/**
 * Start-up against a Redis that cannot be reached: a bounded wait, then a clear error naming REDIS_URL with
 * its password masked.
 */
import net from 'node:net';
import { createLogger } from '../../server/logger';
import { createRedisConnections, RedisUnreachableError } from '../../server/bus/redis/connections';

test('nothing listens at REDIS_URL: connect() fails after the wait, saying where, password masked', async () => {
  // A port that was just free: nothing listens on it.
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const connections = createRedisConnections({ url: `redis://:s3cret@127.0.0.1:${port}`, nodeId: 'n', startupWaitMs: 300, log: createLogger('silent') });
  const err = await connections.connect().then(() => null, (e: Error) => e);
  expect(err).toBeInstanceOf(RedisUnreachableError);
  expect(err!.message).toContain(`REDIS_URL=redis://:***@127.0.0.1:${port}`);
  expect(err!.message).toMatch(/ECONNREFUSED/);
  expect(err!.message).toContain('waited 300 ms');
  expect(err!.message).not.toContain('s3cret');
  await connections.close();
});
