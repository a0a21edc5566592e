/**
 * A command that Redis could not be asked (the connection is down or reconnecting: no offline queue, see
 * server/bus/redis/connections.ts) or did not answer in time is REDIS_UNAVAILABLE, retryable, rather than a fault:
 * the ticket or connection slot it was for was not given. Anything else (an error Redis answered, or a bug of
 * ours) stays what it is: turned into REDIS_UNAVAILABLE it would read as an outage and hide the bug.
 */
import { ReplyError } from 'ioredis';
import { CodedError } from '../../../protocol/errors.js';

/**
 * redis-errors' base class, which ioredis does not export: ReplyError's parent. Its other subclasses are ioredis's
 * "connection lost" errors: AbortError (a command dropped with its connection), MaxRetriesPerRequestError and
 * InterruptError; ParserError too, should an ioredis parse with redis-parser again.
 */
const RedisError = Object.getPrototypeOf(ReplyError) as new (...args: never[]) => Error;

/**
 * ioredis's plain Errors for "not asked", "no answer" and "garbled answer" (ioredis 6: Redis.sendCommand with no
 * offline queue, Command's commandTimeout, a command sent after the connection ended, and DataHandler's
 * returnFatalError: a reply it cannot decode resets the connection, the outcome unknown). They have no class.
 */
const UNREACHABLE = [/^Stream isn't writeable/, /^Command timed out/, /^Connection is closed/, /\. Please report this\.$/];

export function isRedisUnreachable(err: unknown): boolean {
  if (!(err instanceof Error) || err instanceof CodedError || err instanceof ReplyError) return false;
  const { message } = err;
  return err instanceof RedisError || UNREACHABLE.some((pattern) => pattern.test(message));
}

export function redisUnavailable(what = 'this cannot be checked across nodes; retry shortly'): CodedError {
  return new CodedError('REDIS_UNAVAILABLE', `Redis cannot be reached right now, so ${what}`, { retryAfterSeconds: 1 });
}

/** For `.catch`: a connection failure becomes REDIS_UNAVAILABLE (saying `what`), anything else is rethrown. */
export function asRedisUnavailable(what?: string): (err: unknown) => never {
  return (err) => {
    throw isRedisUnreachable(err) ? redisUnavailable(what) : err;
  };
}
