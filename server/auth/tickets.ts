/**
 * Single-use connection tickets, for browsers that cannot keep a long-lived token in JavaScript: a signed-in
 * page asks POST /v1/auth/ticket and opens its socket with `auth: { ticket }` within the ticket's lifetime.
 */
import { randomBytes } from 'node:crypto';
import { CodedError } from '../../protocol/errors.js';
import type { Session } from './tokens.js';

export const TICKET_TTL_MS = 300_000;

export function createTicketStore(now: () => number = Date.now) {
  const tickets = new Map<string, { session: Session; expiresAt: number }>();
  const sweep = () => {
    const t = now();
    for (const [k, v] of tickets) if (v.expiresAt <= t) tickets.delete(k);
  };
  return {
    issue(session: Session): { ticket: string; expires_in: number } {
      sweep();
      const ticket = randomBytes(24).toString('base64url');
      tickets.set(ticket, { session, expiresAt: now() + TICKET_TTL_MS });
      return { ticket, expires_in: TICKET_TTL_MS / 1000 };
    },
    /** Consumes the ticket: a second use, or a use after 300 s, is UNAUTHORIZED. */
    redeem(ticket: unknown): Session {
      const entry = typeof ticket === 'string' ? tickets.get(ticket) : undefined;
      if (entry) tickets.delete(ticket as string);
      if (!entry || entry.expiresAt <= now()) throw new CodedError('UNAUTHORIZED', 'invalid, used or expired ticket');
      return entry.session;
    },
  };
}

export type TicketStore = ReturnType<typeof createTicketStore>;
