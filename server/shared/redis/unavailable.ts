/**
 * A command that Redis could not be asked (the connection is down or reconnecting: no offline queue, see
 * server/bus/redis/connections.ts) or did not answer in time is REDIS_UNAVAILABLE, retryable, rather than a fault:
 * the ticket or connection slot it was for was not given. An error Redis answered (a ReplyError) is a fault.
 */
import { ReplyError } from 'ioredis';
import { CodedError } from '../../../protocol/errors.js';

export function asRedisUnavailable(err: unknown): never {
  if (err instanceof ReplyError || err instanceof CodedError) throw err;
  throw new CodedError('REDIS_UNAVAILABLE', 'Redis cannot be reached right now, so this cannot be checked across nodes; retry shortly', { retryAfterSeconds: 1 });
}
