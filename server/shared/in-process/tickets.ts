/**
 * Single-use connection tickets in memory, for browsers that cannot keep a long-lived token in JavaScript:
 * a signed-in page asks POST /v1/auth/ticket and opens its socket with `auth: { ticket }` within the
 * ticket's lifetime. Expired tickets are swept when a new one is issued (no timer).
 */
import { randomBytes } from 'node:crypto';
import { CodedError } from '../../../protocol/errors.js';
import type { Session } from '../../auth/tokens.js';
import { TICKET_TTL_MS, type Tickets } from '../shared-state.js';

export function createInProcessTickets(now: () => number = Date.now): Tickets {
  const tickets = new Map<string, { session: Session; expiresAt: number }>();
  const sweep = () => {
    const t = now();
    for (const [k, v] of tickets) if (v.expiresAt <= t) tickets.delete(k);
  };
  return {
    async issue(session) {
      sweep();
      const ticket = randomBytes(24).toString('base64url');
      tickets.set(ticket, { session, expiresAt: now() + TICKET_TTL_MS });
      return { ticket, expires_in: TICKET_TTL_MS / 1000 };
    },
    // No await before the delete: two redeems of one ticket cannot both find it.
    async redeem(ticket) {
      const entry = typeof ticket === 'string' ? tickets.get(ticket) : undefined;
      if (entry) tickets.delete(ticket as string);
      if (!entry || entry.expiresAt <= now()) throw new CodedError('UNAUTHORIZED', 'invalid, used or expired ticket');
      return entry.session;
    },
  };
}
