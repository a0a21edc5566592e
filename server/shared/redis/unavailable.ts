/**
 * A command that Redis could not be asked (the connection is down or reconnecting: no offline queue, see
 * server/bus/redis/connections.ts) or did not answer in time is REDIS_UNAVAILABLE, retryable, rather than a fault:
 * the ticket or connection slot it was for was not given. Anything else (an error Redis answered, or a bug of
 * ours) stays what it is: turned into REDIS_UNAVAILABLE it would read as an outage and hide the bug.
 */
import { CodedError } from '../../../protocol/errors.js';

/**
 * ioredis's own words for "not asked" or "no answer" (ioredis 6: Redis.sendCommand, Command's commandTimeout,
 * Redis.flushQueue on close, MaxRetriesPerRequestError). ioredis gives them no class or code of their own.
 */
const UNREACHABLE = [/^Stream isn't writeable/, /^Command timed out/, /^Connection is closed/, /max retries per request/i];

export function isRedisUnreachable(err: unknown): boolean {
  if (!(err instanceof Error) || err instanceof CodedError) return false;
  if (err.name === 'AbortError' || err.name === 'MaxRetriesPerRequestError') return true;
  return UNREACHABLE.some((pattern) => pattern.test(err.message));
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
