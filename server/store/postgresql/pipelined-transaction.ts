/**
 * A transaction in one round trip, on a pipelined connection (pools.ts): BEGIN, every statement and COMMIT are
 * written together (they must not depend on each other's answers). A statement that fails aborts the
 * transaction: PostgreSQL fails the ones after it (25P02) and answers the COMMIT with ROLLBACK. A connection lost
 * meanwhile leaves the COMMIT in doubt, whenever it was lost (the server may still execute what it was sent): the
 * callers end its backend before deciding (backends.ts).
 *
 * A value pg cannot convert (its prepareValue throws) would fail its statement on this side, unsent, while the
 * COMMIT written behind it still goes out: the transaction would commit without it. So every value is converted
 * before anything is sent, and such a failure is a definite one (`sent` false).
 */
import type pg from 'pg';
import { prepareValue } from 'pg/lib/utils.js';
import { messageOf } from '../../../protocol/errors.js';

/** SQLSTATE of a statement sent after another failed in the same transaction. */
const IN_FAILED_TRANSACTION = '25P02';

export class TransactionFailed extends Error {
  constructor(
    /** The error of the statement at fault (not of those its failure aborted). */
    override readonly cause: unknown,
    /** False: nothing was sent (a value could not be converted), so nothing can have committed. */
    readonly sent = true,
  ) {
    super(messageOf(cause));
  }
}

/** The database's (or the connection's) own error inside what a transaction threw. */
export const causeOfFailure = (err: unknown): unknown => (err instanceof TransactionFailed ? err.cause : err);

/** Each statement's result, in order; rejects with TransactionFailed. The connection is idle again after a failure the database answered. */
export async function pipelinedTransaction(client: pg.PoolClient, statements: pg.QueryConfig[]): Promise<pg.QueryResult[]> {
  const converted = convertedValues(statements);
  const answers = await Promise.allSettled([client.query('BEGIN'), ...converted.map((s) => client.query(s)), client.query('COMMIT')]);
  const failures = answers.flatMap((a) => (a.status === 'rejected' ? [a.reason as unknown] : []));
  if (failures.length > 0) {
    const cause = failures.find((f) => (f as { code?: unknown }).code !== IN_FAILED_TRANSACTION) ?? failures[0];
    throw new TransactionFailed(cause);
  }
  return answers.slice(1, statements.length + 1).map((a) => (a as PromiseFulfilledResult<pg.QueryResult>).value);
}

/**
 * The statements with their values as pg writes them (its own prepareValue), converted before anything is sent;
 * throws TransactionFailed with `sent` false if one cannot be.
 */
export function convertedValues(statements: pg.QueryConfig[]): pg.QueryConfig[] {
  try {
    return statements.map((s) => (s.values ? { ...s, values: s.values.map((v) => prepareValue(v)) } : s));
  } catch (err) {
    throw new TransactionFailed(err, false);
  }
}
