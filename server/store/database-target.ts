/**
 * Which database Atoll uses, parsed once from DATABASE_URL (server/config.ts) and handed to openStore. A union
 * on `kind`, one member per implementation folder under server/store/: a new database is one more member here
 * and one more folder, and every `switch` on `kind` that misses it fails to compile.
 */
import path from 'node:path';

/** A SQLite file; Atoll creates it (and its folder) if it does not exist. */
export interface SqliteTarget {
  readonly kind: 'sqlite';
  /** `file:<absolute path>` */
  readonly url: string;
  /** Absolute path of the database file. */
  readonly file: string;
}

export type DatabaseTarget = SqliteTarget;
export type DatabaseKind = DatabaseTarget['kind'];

/** What DATABASE_URL may look like (the configuration refuses anything else, with this hint). */
export const DATABASE_URL_PATTERN = /^file:.+/;
export const DATABASE_URL_HINT = 'must be a SQLite URL like file:./data/atoll.db';

/** A DATABASE_URL that matched DATABASE_URL_PATTERN; relative paths are resolved against `cwd`. */
export function parseDatabaseUrl(url: string, cwd: string): DatabaseTarget {
  const file = path.resolve(cwd, url.slice('file:'.length));
  return { kind: 'sqlite', url: `file:${file}`, file };
}

/** Where the database is, for logs and `npm run db:migrate` (never a password). */
export function describeTarget(target: DatabaseTarget): string {
  switch (target.kind) {
    case 'sqlite':
      return target.file;
  }
}

/** A local folder for development-only files (the development JWT secret): beside the SQLite file. */
export function localStateDir(target: DatabaseTarget): string {
  switch (target.kind) {
    case 'sqlite':
      return path.dirname(target.file);
  }
}
