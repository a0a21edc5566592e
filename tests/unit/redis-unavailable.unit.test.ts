/**
 * Which errors of a Redis command mean "Redis cannot be reached" (REDIS_UNAVAILABLE, retryable): ioredis's own
 * errors for a command not sent, not answered in time, or dropped with its connection. Anything else, a bug of
 * ours above all, keeps its own error: as REDIS_UNAVAILABLE it would read as an outage.
 */
import { ReplyError } from 'ioredis';
import { CodedError } from '../../protocol/errors';
import { asRedisUnavailable, isRedisUnreachable } from '../../server/shared/redis/unavailable';

/** An error named as redis-errors names its classes (the constructor's name). */
function named(name: string, message: string): Error {
  return Object.assign(new Error(message), { name });
}

test.each([
  ["Stream isn't writeable and enableOfflineQueue options is false", new Error("Stream isn't writeable and enableOfflineQueue options is false")],
  ['Command timed out', new Error('Command timed out')],
  ['Connection is closed.', new Error('Connection is closed.')],
  ['AbortError', named('AbortError', 'Command aborted due to connection close')],
  ['MaxRetriesPerRequestError', named('MaxRetriesPerRequestError', 'Reached the max retries per request limit (which is 1).')],
])('%s: Redis cannot be reached', (_, err) => {
  expect(isRedisUnreachable(err)).toBe(true);
  expect(() => asRedisUnavailable('no ticket can be issued')(err)).toThrow(expect.objectContaining({ code: 'REDIS_UNAVAILABLE', message: 'Redis cannot be reached right now, so no ticket can be issued', retryAfterSeconds: 1 }));
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
