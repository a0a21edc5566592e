/**
 * A transaction with as few round trips as its caller can afford, on a pipelined connection (pools.ts): BEGIN
 * and every statement are written together (they must not depend on each other's answers), and COMMIT either
 * with them (`commit: 'with'`: one round trip) or once they have all answered (`'after'`: two). A statement that
 * fails aborts the transaction: PostgreSQL fails the ones after it (25P02) and answers a COMMIT sent with them
 * with ROLLBACK. 'after' is for a caller that must know, when the connection drops, whether COMMIT can have
 * happened: before it was sent, nothing was committed.
 */
import type pg from 'pg';

/** SQLSTATE of a statement sent after another failed in the same transaction. */
const IN_FAILED_TRANSACTION = '25P02';

export class TransactionFailed extends Error {
  constructor(
    /** The error of the statement at fault (not of those its failure aborted). */
    override readonly cause: unknown,
    /** COMMIT had been sent: if its answer was lost, it may have happened. */
    readonly commitSent: boolean,
    /** With 'after', when only COMMIT failed: the statements' results (what the transaction returns if it committed). */
    readonly answers: pg.QueryResult[] | null = null,
  ) {
    super(String((cause as Error)?.message ?? cause));
  }
}

/** Each statement's result, in order; rejects with TransactionFailed. The connection is idle again after a failure the database answered. */
export async function pipelinedTransaction(client: pg.PoolClient, statements: pg.QueryConfig[], commit: 'with' | 'after'): Promise<pg.QueryResult[]> {
  const sent = [client.query('BEGIN'), ...statements.map((s) => client.query(s))];
  if (commit === 'with') sent.push(client.query('COMMIT'));
  const answers = await Promise.allSettled(sent);
  const failures = answers.flatMap((a) => (a.status === 'rejected' ? [a.reason as unknown] : []));
  if (failures.length > 0) {
    const cause = failures.find((f) => (f as { code?: unknown }).code !== IN_FAILED_TRANSACTION) ?? failures[0];
    if (commit === 'after') await client.query('ROLLBACK').catch(() => undefined);
    throw new TransactionFailed(cause, commit === 'with');
  }
  const results = answers.slice(1, statements.length + 1).map((a) => (a as PromiseFulfilledResult<pg.QueryResult>).value);
  if (commit === 'after') {
    try {
      await client.query('COMMIT');
    } catch (err) {
      throw new TransactionFailed(err, true, results);
    }
  }
  return results;
}
