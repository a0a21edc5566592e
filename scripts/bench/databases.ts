/**
 * The databases the bench runs Atoll on. Every Atoll server it starts gets a fresh one, dropped when that
 * server stops: a SQLite file in the server's scratch folder (spawn.ts), or a new database on the PostgreSQL
 * server of --postgresql named atoll_bench_<random>.
 */
import { randomBytes } from 'node:crypto';
import { maskPassword } from '../../server/store/database-target.js';
import { createDatabase, databaseUrl, dropDatabase } from '../../server/store/postgresql/database-admin.js';

export type BenchDatabaseKind = 'sqlite' | 'postgresql';

export interface Scratch {
  /** Environment for the server (DATABASE_URL); empty means spawn.ts's SQLite file. */
  env: Record<string, string>;
  drop(): Promise<void>;
}

export interface BenchDatabase {
  kind: BenchDatabaseKind;
  label: string;
  scratch(): Promise<Scratch>;
}

export const sqliteDatabase = (): BenchDatabase => ({
  kind: 'sqlite',
  label: 'SQLite',
  scratch: async () => ({ env: {}, drop: async () => undefined }),
});

export function postgresqlDatabase(serverUrl: string): BenchDatabase {
  return {
    kind: 'postgresql',
    label: 'PostgreSQL',
    async scratch() {
      const name = `atoll_bench_${randomBytes(5).toString('hex')}`;
      try {
        await createDatabase(serverUrl, name);
      } catch (err) {
        throw new DatabaseUnusableError(`cannot create a database on the PostgreSQL server ${maskPassword(serverUrl)} (--postgresql): ${(err as Error).message}`);
      }
      return { env: { DATABASE_URL: databaseUrl(serverUrl, name) }, drop: () => dropDatabase(serverUrl, name) };
    },
  };
}

export class DatabaseUnusableError extends Error {
  override name = 'DatabaseUnusableError';
}
