/**
 * Single-use connection tickets in Redis, valid on every node: issue SETs `<prefix>ticket:<ticket>` with the
 * session and a PX expiry of TICKET_TTL_MS (Redis drops it when it lapses); redeem GETDELs it, which reads and
 * deletes in one step, so of two redeems of one ticket on any nodes exactly one finds it.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { CodedError } from '../../../protocol/errors.js';
import { TICKET_TTL_MS, type Tickets } from '../shared-state.js';
import { asRedisUnavailable } from './unavailable.js';

/** What issue makes: 24 random bytes, base64url. Anything else is refused without asking Redis. */
const TICKET = /^[A-Za-z0-9_-]{32}$/;
const SESSION = z.object({ userId: z.string(), expiresAt: z.number().nullable() });

export function createRedisTickets(redis: Redis, keyPrefix: string): Tickets {
  const keyOf = (ticket: string) => `${keyPrefix}ticket:${ticket}`;
  const refused = () => new CodedError('UNAUTHORIZED', 'invalid, used or expired ticket');
  return {
    async issue(session) {
      const ticket = randomBytes(24).toString('base64url');
      await redis.set(keyOf(ticket), JSON.stringify({ userId: session.userId, expiresAt: session.expiresAt }), 'PX', TICKET_TTL_MS).catch(asRedisUnavailable('no connection ticket can be issued; retry shortly'));
      return { ticket, expires_in: TICKET_TTL_MS / 1000 };
    },
    async redeem(ticket) {
      if (typeof ticket !== 'string' || !TICKET.test(ticket)) throw refused();
      // A GETDEL without an answer may still run (ioredis sends it again once reconnected): this ticket may be
      // used up, so the client is told to fetch a new one rather than to retry with it.
      const stored = await redis.getdel(keyOf(ticket)).catch(asRedisUnavailable('this connection ticket cannot be redeemed and may be used up; fetch a new ticket and retry shortly'));
      if (stored === null) throw refused();
      let session;
      try {
        session = SESSION.safeParse(JSON.parse(stored));
      } catch {
        throw refused();
      }
      if (!session.success) throw refused();
      return session.data;
    },
  };
}
