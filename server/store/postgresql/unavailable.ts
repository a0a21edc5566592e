/**
 * Which PostgreSQL failures mean "the database cannot be reached right now" (retry later, nothing is wrong with
 * the request) rather than "this statement is wrong". Connection refused, reset or closed, a server shutting
 * down or not yet accepting, too many connections, a pool that timed out waiting: from pg itself, from the
 * Prisma adapter's error kinds, or from Prisma's own codes.
 */
import { unavailableError } from '../db-unavailable.js';

const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);
// Class 08 (connection exception), 57P01-57P03 (admin shutdown, crash shutdown, cannot connect now), 53300 (too
// many connections), 53xxx (insufficient resources).
const SQLSTATE = /^(08...|57P0[1-3]|53...)$/;
const ADAPTER_KINDS = new Set(['DatabaseNotReachable', 'ConnectionClosed', 'SocketTimeout', 'TooManyConnections', 'TlsConnectionError']);
const PRISMA_CODES = new Set(['P1001', 'P1002', 'P1008', 'P1017', 'P2024']);
// pg's query_timeout ('Query read timeout'): a statement that got no answer at all means the connection is lost (a
// silent partition); the pool then discards it, and a COMMIT sent on it may have happened. A client's own connect
// timeout ('timeout expired', connectionTimeoutMillis) is a server too busy or too far to answer in time.
const MESSAGES = /Query read timeout|timeout expired|Connection terminated|connection error|Client was closed|timeout exceeded when trying to connect|Connection refused|socket hang up|not queryable|the database system is (starting up|shutting down)/i;

export function isUnavailable(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 4) return false;
  const e = err as { code?: unknown; kind?: unknown; message?: unknown; cause?: unknown; originalCode?: unknown; errno?: unknown };
  if (typeof e.code === 'string' && (SOCKET_CODES.has(e.code) || SQLSTATE.test(e.code) || PRISMA_CODES.has(e.code))) return true;
  if (typeof e.originalCode === 'string' && SQLSTATE.test(e.originalCode)) return true;
  if (typeof e.kind === 'string' && ADAPTER_KINDS.has(e.kind)) return true;
  if (typeof e.message === 'string' && MESSAGES.test(e.message)) return true;
  return isUnavailable(e.cause, depth + 1);
}

/**
 * An error PostgreSQL itself sent (a SQLSTATE with a severity), as opposed to one raised on this side: a
 * connection that failed with anything else is in an unknown state, and a COMMIT it carried may have happened.
 */
export function isServerAnswer(err: unknown): boolean {
  const e = err as { code?: unknown; severity?: unknown } | null;
  return typeof e?.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) && typeof e.severity === 'string';
}


/** Rethrows a reachability failure as DB_UNAVAILABLE; anything else as it was. */
export function asUnavailable(err: unknown): never {
  throw isUnavailable(err) ? unavailableError() : err;
}
