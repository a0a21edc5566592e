/**
 * Which SQLite failures mean "the database cannot take this right now" (retry later, nothing is wrong with the
 * write) rather than "this statement is wrong": the disk full (SQLITE_FULL), an I/O error, the file locked by
 * another process past the busy timeout, the file gone, out of memory. A local file is never unreachable, but
 * it is as unable to take a write then as an unreachable PostgreSQL, and acknowledged work must survive it alike.
 */
const CODES = /^SQLITE_(FULL|IOERR|BUSY|LOCKED|CANTOPEN|NOMEM|PROTOCOL)(_|$)/;

export function isStorageFailure(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 4) return false;
  const e = err as { code?: unknown; cause?: unknown };
  if (typeof e.code === 'string' && CODES.test(e.code)) return true;
  return isStorageFailure(e.cause, depth + 1);
}

/** The code a storage failure reports (SQLITE_FULL...), for logs and /readyz. */
export function storageCodeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : String((err as Error | null)?.message ?? err);
}
