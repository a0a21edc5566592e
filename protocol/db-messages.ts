/**
 * What a worker's database statements look like on the wire (worker → cell → front and back). The
 * front validates every one of them (server/store/worker-query-gate.ts): a worker runs agent code.
 */

/** The most a forwarded statement may hold: checked by the cell (workers/cell/run-port-check.ts) and the gate. */
export const MAX_SQL_CHARS = 16_384;
export const MAX_ARGS = 64;

/** queryRaw (rows) or executeRaw (affected-row count), as Prisma's adapter interface splits them. */
export type DbQueryKind = 'query' | 'execute';

/** Prisma's SqlQuery (@prisma/driver-adapter-utils), as plain data. */
export interface ForwardedSqlQuery {
  sql: string;
  args: unknown[];
  argTypes: { scalarType: string; dbType?: string | null; arity: string }[];
}

/** Prisma's SqlResultSet, as plain data. */
export interface ForwardedResultSet {
  columnTypes: number[];
  columnNames: string[];
  rows: unknown[][];
  lastInsertId?: string;
}

/** Error codes of a refused or failed statement (internal: the agent sees them on the error Prisma throws). */
/** DB_UNAVAILABLE: the database cannot be reached right now (retry later); DB_QUERY_FAILED: the statement failed. */
export type DbErrorCode = 'DB_QUERY_REFUSED' | 'DB_QUERY_FAILED' | 'DB_UNAVAILABLE' | 'DB_NO_RUN' | 'DB_RUN_RELEASED' | 'DB_UNSUPPORTED';

export type DbAnswer =
  | { ok: true; result: ForwardedResultSet | number }
  | { ok: false; error: { code: DbErrorCode; message: string } };

/** Why the front's gate refused a worker's statement (the label of atoll_db_queries_refused_total). */
export const REFUSAL_REASONS = ['invalid_message', 'run_not_running', 'statement_not_allowed', 'invalid_args', 'user_mismatch', 'too_many_waiting'] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];
