/**
 * COMMITs the server holds up, as a stalled disk or synchronous standby would: a deferred trigger on a table makes
 * the COMMIT of a transaction that wrote a matching row wait for an advisory lock this helper holds, past the
 * front's read timeout. What the front decides meanwhile (an undo, a look-up) must not be undone by that COMMIT
 * landing afterwards.
 */
import { randomInt } from 'node:crypto';
import pg from 'pg';
import { eventually } from './client';
import type { TestDatabase } from './pg-database';

export interface HeldCommits {
  /** How many transactions wait for the lock now (a COMMIT held up). */
  waiting(): Promise<number>;
  /** Lets held COMMITs go on; resolves once none waits or holds the lock any more (each has landed or ended). */
  release(): Promise<void>;
}

/** Holds the COMMIT of transactions that `event` a row of `table` for which `when` (SQL on NEW) is true. */
export async function holdCommits(db: TestDatabase, table: string, event: 'INSERT' | 'UPDATE', when: string): Promise<HeldCommits> {
  const key = randomInt(1, 2 ** 31 - 1);
  const name = `held_commit_${key}`;
  const holder = new pg.Client({ connectionString: db.url });
  await holder.connect();
  await holder.query('SELECT pg_advisory_lock($1)', [key]);
  await db.query(`CREATE FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF ${when} THEN PERFORM pg_advisory_xact_lock_shared(${key}); END IF; RETURN NULL; END $$`);
  await db.query(`CREATE CONSTRAINT TRIGGER ${name} AFTER ${event} ON "${table}" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ${name}()`);
  const locks = async (granted?: boolean) =>
    (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 ${granted === undefined ? '' : `AND granted = ${granted}`}`, [key]))[0]!.n;
  return {
    waiting: () => locks(false),
    async release() {
      await holder.end();
      if (!(await eventually(async () => (await locks()) === 0, 10_000, 20))) throw new Error('a held COMMIT still waits');
      await db.query(`DROP TRIGGER ${name} ON "${table}"`);
      await db.query(`DROP FUNCTION ${name}()`);
    },
  };
}
