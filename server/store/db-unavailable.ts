/**
 * The error a request gets while the database cannot take it (PostgreSQL unreachable, SQLite's disk full or its
 * file failing): retryable, with a hint. Nothing of the request was accepted.
 */
import { CodedError } from '../../protocol/errors.js';

export function unavailableError(): CodedError {
  return new CodedError('DB_UNAVAILABLE', 'the database cannot be reached right now; retry shortly (with the same correlation_id a retry is safe)', { retryAfterSeconds: 2 });
}
