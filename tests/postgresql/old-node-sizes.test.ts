/**
 * PostgreSQL's "size" defaults to 0 so that a node older than the column keeps inserting during a rolling upgrade
 * (migration 20261208000000_stored_sizes). The worker query gate trusts "size" to bound what one ctx.db
 * messages.list reads to 1 MiB: rows an old node wrote would keep 0 and a page of 100 of them (answers of up to
 * MAX_RESULT_BYTES each) be read whole for one call (helper-64). A BEFORE INSERT trigger measures rows that arrive
 * with 0; rows written with their size keep it.
 */
import type pg from 'pg';
import { createdDatabase, type ScratchDatabase } from '../helpers/pg-scratch';
import { migrationsFolder } from '../../server/store/migrations';
import { applyMigrations } from '../../server/store/postgresql/apply-migrations';

let db: ScratchDatabase;
let client: pg.Client;
afterAll(async () => {
  await client?.end().catch(() => undefined);
  await db?.drop();
});

test('a message an older node inserts (without "size") is sized as the gate measures it', async () => {
  db = await createdDatabase();
  client = await db.connect();
  await applyMigrations(client, migrationsFolder('postgresql'));
  await client.query(`INSERT INTO "User" ("id") VALUES ('u')`);
  await client.query(`INSERT INTO "Thread" ("id", "userId", "updatedAt") VALUES ('t', 'u', now())`);
  // Three answers of 600,000 characters, written as a node from before the column writes them.
  for (let i = 0; i < 3; i++) await client.query(`INSERT INTO "Message" ("threadId", "role", "content") VALUES ('t', 'assistant', $1)`, ['x'.repeat(600_000)]);
  // What RunStore.messagesFitting sums for the page (its stored sizes), against what the page holds.
  const { rows } = await client.query(`SELECT sum("size")::int AS stored, sum(length("content"))::int AS real FROM "Message" WHERE "threadId" = 't'`);
  expect(rows[0]).toEqual({ stored: 1_800_000, real: 1_800_000 });
  // An event too, and a current node's rows keep the size they were written with.
  await client.query(`INSERT INTO "Run" ("id", "userId", "threadId", "agentName", "input", "requestId") VALUES ('r', 'u', 't', 'echo', '{}', 'q')`);
  await client.query(`INSERT INTO "RunEvent" ("id", "runId", "seq", "type", "payload", "timestamp") VALUES ('e1', 'r', 1, 'run_queued', $1, now())`, ['{"a":"ü"}']);
  await client.query(`INSERT INTO "RunEvent" ("id", "runId", "seq", "type", "payload", "size", "timestamp") VALUES ('e2', 'r', 2, 'run_queued', '{}', 7, now())`);
  const events = await client.query(`SELECT "id", "size" FROM "RunEvent" ORDER BY "seq"`);
  expect(events.rows).toEqual([
    { id: 'e1', size: 9 },
    { id: 'e2', size: 7 },
  ]);
});
