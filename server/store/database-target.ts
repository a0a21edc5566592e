/**
 * Which database Atoll uses, parsed once from DATABASE_URL (server/config.ts) and handed to openStore. A union
 * on `kind`, one member per implementation folder under server/store/: a new database is one more member here
 * and one more folder, and every `switch` on `kind` that misses it fails to compile.
 */
import path from 'node:path';
import type { DbProvider } from '../../protocol/cell-messages.js';

/** A SQLite file; Atoll creates it (and its folder) if it does not exist. */
export interface SqliteTarget {
  readonly kind: 'sqlite';
  /** `file:<absolute path>` */
  readonly url: string;
  /** Absolute path of the database file. */
  readonly file: string;
}

/** A PostgreSQL database; Atoll creates it if the server has no database of that name. */
export interface PostgresqlTarget {
  readonly kind: 'postgresql';
  /** The URL as given (it may hold a password: never log it, use `masked`). */
  readonly url: string;
  /** The URL with its passwords (userinfo, query) replaced by `***`: for logs and error messages. */
  readonly masked: string;
  /** The database's name (the URL's path). */
  readonly database: string;
  /** Where development-only files go (the development JWT secret): ./data under the working directory. */
  readonly stateDir: string;
}

export type DatabaseTarget = SqliteTarget | PostgresqlTarget;
export type DatabaseKind = DatabaseTarget['kind'];

/** What DATABASE_URL may look like (the configuration refuses anything else, with this hint). */
export const DATABASE_URL_PATTERN = /^(file:.+|postgres(ql)?:\/\/[^/]+\/[^/?#]+([?#].*)?)$/;
export const DATABASE_URL_HINT = 'must be a SQLite URL like file:./data/atoll.db or a PostgreSQL URL like postgresql://user:password@host:5432/atoll';

/**
 * Query parameters a client takes a password from: both clients read every parameter into their options, so
 * `?password=` works as well as the userinfo (pg: password, sslpassword; ioredis: password, sentinelPassword).
 */
const PASSWORD_PARAM = /pass(word)?$/i;

/** The URL with its passwords (userinfo and query parameters, if any) replaced by `***`. */
export function maskPassword(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return maskQueryPasswords(u.toString());
  } catch {
    return maskQueryPasswords(url.replace(/\/\/([^:/@]*):[^@]*@/, '//$1:***@'));
  }
}

/** `text` with the value of each password query parameter replaced by `***`; the rest left as written. */
export function maskQueryPasswords(text: string): string {
  const start = text.indexOf('?');
  if (start < 0) return text;
  const hash = text.indexOf('#', start);
  const end = hash < 0 ? text.length : hash;
  const query = text
    .slice(start + 1, end)
    .split('&')
    .map((pair) => {
      // The name as the clients see it (URLSearchParams: percent-decoded, + as space), so pass%77ord is caught too.
      const [name] = new URLSearchParams(pair).keys();
      return name !== undefined && PASSWORD_PARAM.test(name.trim()) ? `${pair.split('=')[0]}=***` : pair;
    })
    .join('&');
  return `${text.slice(0, start + 1)}${query}${text.slice(end)}`;
}

/** A DATABASE_URL that matched DATABASE_URL_PATTERN; relative SQLite paths are resolved against `cwd`. */
export function parseDatabaseUrl(url: string, cwd: string): DatabaseTarget {
  if (url.startsWith('file:')) {
    const file = path.resolve(cwd, url.slice('file:'.length));
    return { kind: 'sqlite', url: `file:${file}`, file };
  }
  const database = decodeURIComponent(new URL(url).pathname.slice(1));
  return { kind: 'postgresql', url, masked: maskPassword(url), database, stateDir: path.resolve(cwd, 'data') };
}

/** Where the database is, for logs and `npm run db:migrate` (never a password). */
export function describeTarget(target: DatabaseTarget): string {
  switch (target.kind) {
    case 'sqlite':
      return target.file;
    case 'postgresql':
      return target.masked;
  }
}

/** A local folder for development-only files (the development JWT secret): beside the SQLite file, or ./data. */
export function localStateDir(target: DatabaseTarget): string {
  switch (target.kind) {
    case 'sqlite':
      return path.dirname(target.file);
    case 'postgresql':
      return target.stateDir;
  }
}

/** Prisma's provider name for a target: what the workers' Prisma clients compile for (a backend says the same). */
export function providerOf(target: DatabaseTarget): DbProvider {
  switch (target.kind) {
    case 'sqlite':
      return 'sqlite';
    case 'postgresql':
      return 'postgres';
  }
}
