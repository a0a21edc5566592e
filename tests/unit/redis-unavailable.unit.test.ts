/**
 * Which errors of a Redis command mean "Redis cannot be reached" (REDIS_UNAVAILABLE, retryable): ioredis's own,
 * produced here by ioredis itself, for a command not sent, not answered in time, sent after the connection ended,
 * or dropped with a garbled connection. Anything else, a bug of ours above all, keeps its own error: as
 * REDIS_UNAVAILABLE it would read as an outage.
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Redis, ReplyError } from 'ioredis';
import { MaxRetriesPerRequestError } from 'ioredis/built/errors/index.js';
import { CodedError } from '../../protocol/errors';
import { asRedisUnavailable, isRedisUnreachable } from '../../server/shared/redis/unavailable';

/**
 * A TCP server that plays Redis badly: each GET gets `reply` (or nothing: null); the CLIENT SETINFOs ioredis sends
 * on connecting get +OK.
 */
async function fakeRedis(reply: string | null): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('data', (chunk) => {
      // Each command is an array of bulk strings: `*<n>\r\n$<len>\r\n<name>\r\n...`
      for (const [, name] of chunk.toString().matchAll(/\*\d+\r\n\$\d+\r\n([A-Za-z]+)\r\n/g)) {
        if (name!.toLowerCase() === 'client') socket.write('+OK\r\n');
        else if (reply !== null) socket.write(reply);
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      sockets.forEach((s) => s.destroy());
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** What a GET fails with on `redis` (the test fails if it succeeds). */
async function failureOf(redis: Redis): Promise<unknown> {
  redis.on('error', () => undefined);
  try {
    await redis.get('k');
  } catch (err) {
    return err;
  } finally {
    redis.disconnect();
  }
  throw new Error('the command succeeded');
}

// As Atoll's connections (no offline queue, RESP2: no HELLO), with no ready check and no reconnection.
const options = { lazyConnect: true, enableOfflineQueue: false, enableReadyCheck: false, retryStrategy: () => null, maxRetriesPerRequest: 0, protocol: 2 } as const;

/** What a GET fails with against a fake Redis that answers it `reply` (nothing: null). */
async function failureAgainst(reply: string | null, extra: { commandTimeout?: number } = {}): Promise<unknown> {
  const server = await fakeRedis(reply);
  try {
    const redis = new Redis({ ...options, ...extra, port: server.port });
    await redis.connect();
    return await failureOf(redis);
  } finally {
    await server.close();
  }
}

function expectUnreachable(err: unknown): void {
  expect(isRedisUnreachable(err)).toBe(true);
  expect(() => asRedisUnavailable('no ticket can be issued')(err)).toThrow(expect.objectContaining({ code: 'REDIS_UNAVAILABLE', message: 'Redis cannot be reached right now, so no ticket can be issued', retryAfterSeconds: 1 }));
}

test('not sent: the connection is not ready and there is no offline queue', async () => {
  const err = await failureOf(new Redis({ ...options, port: 1 }));
  expect(String(err)).toMatch(/Stream isn't writeable/);
  expectUnreachable(err);
});

test('sent after the connection ended', async () => {
  const redis = new Redis({ ...options, port: 1 });
  redis.disconnect();
  const err = await failureOf(redis);
  expect(String(err)).toMatch(/Connection is closed/);
  expectUnreachable(err);
});

test('no answer in time (commandTimeout)', async () => {
  const err = await failureAgainst(null, { commandTimeout: 50 });
  expect(String(err)).toMatch(/Command timed out/);
  expectUnreachable(err);
});

test('a garbled reply stream (the connection is reset, the outcome unknown)', async () => {
  const err = await failureAgainst('?garbage\r\n');
  expect(String(err)).toMatch(/Unknown RESP type .*\. Please report this\.$/);
  expectUnreachable(err);
});

test('given up after its retries (MaxRetriesPerRequestError, an AbortError of redis-errors)', () => {
  expectUnreachable(new MaxRetriesPerRequestError(1));
});

test.each([
  ['a TypeError of ours', new TypeError("Cannot read properties of undefined (reading 'userId')")],
  ['an answer of Redis', new ReplyError('WRONGTYPE Operation against a key holding the wrong kind of value')],
  ['a coded error', new CodedError('RATE_LIMITED', 'too many')],
  ['not an Error', 'Command timed out'],
])('%s is not an outage: rethrown as it is', (_, err) => {
  expect(isRedisUnreachable(err)).toBe(false);
  let thrown: unknown;
  try {
    asRedisUnavailable()(err);
  } catch (e) {
    thrown = e;
  }
  expect(thrown).toBe(err);
});

test('an error Redis answered, really: rethrown as it is', async () => {
  const err = await failureAgainst('-WRONGTYPE Operation against a key holding the wrong kind of value\r\n');
  expect(err).toBeInstanceOf(ReplyError);
  expect(isRedisUnreachable(err)).toBe(false);
});
