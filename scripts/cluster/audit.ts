/**
 * The checker's observer inside PostgreSQL: a trigger on the `Run` table that records every insert, change and
 * delete of a run row as it happens (schema `atoll_check`, beside Atoll's tables, never read by Atoll), each
 * numbered by one sequence inside the transaction that makes it. The end state alone cannot show that two runs
 * were active at once, nor in which order runs were claimed; this record can (checks/occupancy.ts says why its
 * order is a sound witness). It observes the database, whatever code wrote to it: it needs only the `Run`
 * table's `id`, `userId`, `threadId`, `status` and `attempts` columns, and reads `owner` where there is one
 * (several nodes: the lease that claimed the run).
 *
 * Installed once the first node has migrated the database, before any run is accepted.
 */
import pg from 'pg';
import type { Transition } from './history.js';

const INSTALL = `
CREATE SCHEMA IF NOT EXISTS atoll_check;
CREATE TABLE IF NOT EXISTS atoll_check.run_change (
  id        bigserial PRIMARY KEY,
  run_id    text NOT NULL,
  user_id   text NOT NULL,
  thread_id text NOT NULL,
  old_status text,
  new_status text,
  attempts  integer,
  at        timestamptz NOT NULL DEFAULT clock_timestamp(),
  row_after jsonb NOT NULL
);
CREATE OR REPLACE FUNCTION atoll_check.record_run_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO atoll_check.run_change (run_id, user_id, thread_id, old_status, new_status, attempts, row_after)
    VALUES (NEW.id, NEW."userId", NEW."threadId", NULL, NEW.status, NEW.attempts, to_jsonb(NEW) - 'input' - 'result' - 'report');
  ELSIF TG_OP = 'UPDATE' THEN
    IF NEW IS DISTINCT FROM OLD THEN
      INSERT INTO atoll_check.run_change (run_id, user_id, thread_id, old_status, new_status, attempts, row_after)
      VALUES (NEW.id, NEW."userId", NEW."threadId", OLD.status, NEW.status, NEW.attempts, to_jsonb(NEW) - 'input' - 'result' - 'report');
    END IF;
  ELSE
    INSERT INTO atoll_check.run_change (run_id, user_id, thread_id, old_status, new_status, attempts, row_after)
    VALUES (OLD.id, OLD."userId", OLD."threadId", OLD.status, NULL, OLD.attempts, to_jsonb(OLD) - 'input' - 'result' - 'report');
  END IF;
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS atoll_check_run_change ON "Run";
CREATE TRIGGER atoll_check_run_change AFTER INSERT OR UPDATE OR DELETE ON "Run"
  FOR EACH ROW EXECUTE FUNCTION atoll_check.record_run_change();
`;

async function withClient<T>(databaseUrl: string, use: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Installs (or reinstalls) the audit trigger; the `Run` table must exist (a node has started). */
export function installAudit(databaseUrl: string): Promise<void> {
  return withClient(databaseUrl, async (c) => {
    await c.query(INSTALL);
  });
}

/** Every recorded change, in the order recorded. */
export function readTransitions(databaseUrl: string): Promise<Transition[]> {
  return withClient(databaseUrl, async (c) => {
    const { rows } = await c.query(
      `SELECT id::text AS id, run_id, user_id, thread_id, old_status, new_status, attempts,
              (EXTRACT(EPOCH FROM at) * 1000)::float8 AS at_ms, row_after
         FROM atoll_check.run_change AS c ORDER BY c.id`,
    );
    return rows.map((r) => ({
      id: Number(r.id),
      runId: r.run_id,
      userId: r.user_id,
      threadId: r.thread_id,
      from: r.old_status,
      to: r.new_status,
      attempts: r.attempts,
      owner: typeof r.row_after?.owner === 'string' ? r.row_after.owner : null,
      atMs: r.at_ms,
      row: r.row_after,
    }));
  });
}
