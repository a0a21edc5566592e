/**
 * The ClusterStore (server/cluster/cluster-store.ts) on PostgreSQL: node leases in database time, the Run table
 * as the shared queue, takeovers of expired leases. Why not a job library: README "Running several nodes".
 *
 * Locks, and why each is enough:
 * - a user's QueueUser row serializes everything that changes how many runs the user has waiting or started,
 *   and what its conversations are doing: an accept (the cap on waiting runs, a busy conversation) and a claim
 *   (the cap on started runs, one run per conversation, FIFO). Claims lock users FOR UPDATE SKIP LOCKED, so
 *   nodes claiming together serve different users instead of waiting on each other;
 * - a run's own row (FOR UPDATE) serializes its events written by a node that does not hold it (run_queued, a
 *   stop while it waits, a takeover) with a claim, which reads the run's last seq only after its UPDATE got the row;
 * - an expired lease's Node row (FOR UPDATE SKIP LOCKED) gives each takeover to one node, and its runs change
 *   in the transaction that deletes the lease: exactly once.
 * Timestamps are database time as UTC (`now() AT TIME ZONE 'UTC'`, the TIMESTAMP(3) columns hold UTC).
 */
import { createHash, randomUUID } from 'node:crypto';
import pg from 'pg';
import { CodedError } from '../../../protocol/errors.js';
import type { RunEventEnvelope } from '../../../protocol/events.js';
import type { ClaimedRun, ClusterStore, TakeoverDecision } from '../../cluster/cluster-store.js';
import { RowMissingError } from '../run-writes.js';
import { acceptedRecordOf, acceptedRowOf, runRecordOf as runRecordOfRow, type RunRow as RunFields } from '../run-record.js';
import { explain, runStatements, type RunWrite } from './run-statements.js';
import { asUnavailable } from './unavailable.js';

type RunRow = RunFields & { owner: string | null };

/**
 * TIMESTAMP(3) columns hold UTC (utc() in run-statements.ts); pg would read them as local time. Per query, not
 * pg.types.setTypeParser: that one is global to the process.
 */
const UTC_TYPES = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === pg.types.builtins.TIMESTAMP ? (v: string) => new Date(`${v.replace(' ', 'T')}Z`) : pg.types.getTypeParser(oid, format as 'text')) as pg.CustomTypesConfig['getTypeParser'],
};

/**
 * A prepared statement, named by its text: PostgreSQL parses and plans it once per connection, not at every
 * call (the claim's statements cost more to plan than to run). The pools run with WRITE_CONNECTION_OPTIONS'
 * generic plans, see run-statements.ts.
 */
const sql = (text: string, values: unknown[], types?: pg.CustomTypesConfig): pg.QueryConfig => ({ name: `atoll_q_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`, text, values, ...(types ? { types } : {}) });

/**
 * The Run columns these statements read, named rather than `*`: a prepared statement whose result gains a
 * column (another node migrated the database) fails with "cached plan must not change result type".
 */
const RUN_FIELDS = ['id', 'threadId', 'userId', 'agentName', 'input', 'correlationId', 'requestId', 'status', 'errorCode', 'errorMessage', 'result', 'queuedAt', 'startedAt', 'finishedAt', 'cellId', 'workerId', 'attempts', 'report', 'replayOf', 'owner'] as const satisfies readonly (keyof RunRow)[];
const columns = (alias?: string) => RUN_FIELDS.map((f) => (alias ? `${alias}."${f}"` : `"${f}"`)).join(', ');
const RUN_COLUMNS = columns();

/** A query that returns Run rows. */
const runs = (c: pg.PoolClient, text: string, values: unknown[]) => c.query<RunRow>(sql(text, values, UTC_TYPES));

const NOW = `(now() AT TIME ZONE 'UTC')`;
const ACTIVE = `('queued', 'running')`;

async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect().catch(asUnavailable);
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/** Executes a batch of run writes (run-statements.ts) inside the caller's transaction. */
async function write(client: pg.PoolClient, items: RunWrite[]): Promise<void> {
  for (const s of runStatements(items)) await client.query({ name: s.name, text: s.text, values: s.values });
}

const lastSeqs = async (client: pg.PoolClient, runIds: string[]): Promise<Map<string, number>> => {
  const { rows } = await client.query<{ runId: string; last: number }>(sql('SELECT "runId", max("seq") AS "last" FROM "RunEvent" WHERE "runId" = ANY($1::text[]) GROUP BY "runId"', [runIds]));
  return new Map(rows.map((r) => [r.runId, Number(r.last)]));
};

/**
 * `pool` serves the queue (accepts, claims, takeovers, stops); `leasePool` (one connection) only the lease: a
 * renewal must never wait behind a burst of accepts, or a busy node would lose its lease and its runs.
 */
export function createPgClusterStore(pool: pg.Pool, leasePool: pg.Pool): ClusterStore {
  return {
    async register(nodeId, leaseMs) {
      const lease = randomUUID();
      return inTransaction(leasePool, async (c) => {
        const { rowCount } = await c.query(sql(`UPDATE "Node" SET "expiresAt" = ${NOW} - interval '1 millisecond' WHERE "nodeId" = $1 AND "expiresAt" > ${NOW}`, [nodeId]));
        // Runs a single node left running when it stopped (before this database served several nodes) belong to
        // no lease: they are given one that has expired already, so the next takeover treats them like a dead node's.
        const orphans = `orphans-${randomUUID()}`;
        const { rowCount: orphaned } = await c.query(sql(`UPDATE "Run" SET "owner" = $1 WHERE "owner" IS NULL AND "status" = 'running'`, [orphans]));
        if (orphaned) await c.query(sql(`INSERT INTO "Node" ("id", "nodeId", "startedAt", "expiresAt") VALUES ($1, 'a single node', ${NOW}, ${NOW} - interval '1 millisecond')`, [orphans]));
        await c.query(sql(`INSERT INTO "Node" ("id", "nodeId", "startedAt", "expiresAt") VALUES ($1, $2, ${NOW}, ${NOW} + $3 * interval '1 millisecond')`, [lease, nodeId, leaseMs]));
        return { lease, replaced: rowCount ?? 0 };
      });
    },

    async renew(lease, leaseMs) {
      const { rowCount } = await leasePool.query(sql(`UPDATE "Node" SET "expiresAt" = ${NOW} + $2 * interval '1 millisecond' WHERE "id" = $1 AND "expiresAt" > ${NOW}`, [lease, leaseMs]));
      if (!rowCount) return { alive: false, stopsAsked: [] };
      const { rows } = await leasePool.query<{ id: string }>(sql(`SELECT "id" FROM "Run" WHERE "owner" = $1 AND "cancelRequested" AND "status" IN ${ACTIVE}`, [lease]));
      return { alive: true, stopsAsked: rows.map((r) => r.id) };
    },

    async deregister(lease) {
      await inTransaction(pool, async (c) => {
        await c.query(sql(`UPDATE "Run" SET "owner" = NULL, "status" = 'queued' WHERE "owner" = $1 AND "status" IN ${ACTIVE}`, [lease]));
        await c.query(sql('DELETE FROM "Node" WHERE "id" = $1', [lease]));
      });
    },

    async takeOverExpired(decide) {
      return inTransaction(pool, async (c) => {
        const { rows: nodes } = await c.query<{ id: string; nodeId: string }>(
          sql(`SELECT "id", "nodeId" FROM "Node" WHERE "expiresAt" <= ${NOW} ORDER BY "expiresAt" LIMIT 1 FOR UPDATE SKIP LOCKED`, []),
        );
        const node = nodes[0];
        if (!node) return null;
        const { rows } = await runs(c, `SELECT ${RUN_COLUMNS} FROM "Run" WHERE "owner" = $1 AND "status" IN ${ACTIVE} ORDER BY "id" FOR UPDATE`, [node.id]);
        const seqs = await lastSeqs(c, rows.map((r) => r.id));
        const events: RunEventEnvelope[] = [];
        const items: RunWrite[] = [];
        const back: string[] = [];
        for (const row of rows) {
          const decision: TakeoverDecision = decide(runRecordOfRow(row), seqs.get(row.id) ?? 0, node.nodeId);
          if (decision.kind === 'fail') {
            items.push({ kind: 'finish', row: decision.finish, owner: null });
            events.push(decision.finish.terminal);
            continue;
          }
          if (decision.kind === 'rerun') {
            items.push({ kind: 'events', events: [decision.event], owner: null });
            events.push(decision.event);
          }
          back.push(row.id);
        }
        if (items.length) await write(c, items);
        if (back.length) await c.query(sql(`UPDATE "Run" SET "owner" = NULL, "status" = 'queued' WHERE "id" = ANY($1::text[])`, [back]));
        await c.query(sql('DELETE FROM "Node" WHERE "id" = $1', [node.id]));
        return { nodeId: node.nodeId, events, requeued: back.length };
      });
    },

    async accept(run, check) {
      const row = acceptedRowOf(run);
      try {
        return await inTransaction(pool, async (c) => {
          // Creates or locks the user's row: every accept and claim of this user waits here in turn.
          await c.query(sql(`INSERT INTO "QueueUser" ("userId", "servedAt") VALUES ($1, ${NOW}) ON CONFLICT ("userId") DO UPDATE SET "userId" = EXCLUDED."userId"`, [row.userId]));
          const { rows } = await c.query<{ waiting: string; busy: string[] }>(
            sql(
              `SELECT count(*) FILTER (WHERE "status" = 'queued') AS "waiting", coalesce(array_agg("id") FILTER (WHERE "threadId" = $2), '{}') AS "busy" ` +
                `FROM "Run" WHERE "userId" = $1 AND "status" IN ${ACTIVE}`,
              [row.userId, row.threadId],
            ),
          );
          const { waiting, busy } = rows[0]!;
          if (Number(waiting) >= check.userMaxQueuedRuns) {
            throw new CodedError('OVERLOADED', `you have ${check.userMaxQueuedRuns} runs waiting (USER_MAX_QUEUED_RUNS); nothing was accepted`, { retryAfterSeconds: 5 });
          }
          if (busy.length > 0 && check.rejectIfBusy) {
            throw new CodedError('THREAD_BUSY', `thread ${row.threadId} has a run in progress (multitask "reject")`, { retryAfterSeconds: 1 });
          }
          const item: RunWrite = { kind: 'accept', row };
          try {
            await write(c, [item]);
          } catch (err) {
            throw explain(item, err);
          }
          return { record: acceptedRecordOf(run), busy };
        });
      } catch (err) {
        if (err instanceof RowMissingError) throw new CodedError('NOT_FOUND', 'no such thread');
        return asUnavailable(err);
      }
    },

    async claim(lease, max, userMaxConcurrentRuns) {
      if (max <= 0) return [];
      return inTransaction(pool, async (c) => {
        const { rows: users } = await c.query<{ userId: string }>(
          sql(
            `WITH "waiting" AS (SELECT DISTINCT "userId" FROM "Run" WHERE "status" = 'queued' AND "owner" IS NULL) ` +
              `SELECT q."userId" FROM "QueueUser" AS q JOIN "waiting" AS w ON w."userId" = q."userId" ORDER BY q."servedAt", q."userId" LIMIT $1 FOR UPDATE OF q SKIP LOCKED`,
            [max],
          ),
        );
        if (users.length === 0) return [];
        // Each locked user's oldest waiting run (accept order: the user's message ids are monotonic), with what
        // its user and its conversation hold.
        const { rows: heads } = await c.query<RunRow & { active: string; busy: boolean }>(
          sql(
            `SELECT ${columns('h')}, ` +
              `(SELECT count(*) FROM "Run" AS a WHERE a."userId" = h."userId" AND a."owner" IS NOT NULL AND a."status" IN ${ACTIVE}) AS "active", ` +
              `EXISTS (SELECT 1 FROM "Run" AS b WHERE b."threadId" = h."threadId" AND b."owner" IS NOT NULL AND b."status" IN ${ACTIVE}) AS "busy" ` +
              `FROM unnest($1::text[]) AS u("id") CROSS JOIN LATERAL (` +
              `SELECT ${columns('r')} FROM "Run" AS r WHERE r."userId" = u."id" AND r."status" = 'queued' AND r."owner" IS NULL ` +
              `ORDER BY r."queuedAt", (SELECT min(m."id") FROM "Message" AS m WHERE m."runId" = r."id") LIMIT 1) AS h`,
            [users.map((u) => u.userId)],
            UTC_TYPES,
          ),
        );
        const eligible = heads.filter((h) => Number(h.active) < userMaxConcurrentRuns && !h.busy);
        if (eligible.length === 0) return [];
        const { rows: taken } = await runs(
          c,
          `UPDATE "Run" SET "owner" = $1 WHERE "id" = ANY($2::text[]) AND "status" = 'queued' AND "owner" IS NULL RETURNING ${RUN_COLUMNS}`,
          [lease, eligible.map((h) => h.id)],
        );
        await c.query(sql(`UPDATE "QueueUser" SET "servedAt" = ${NOW} WHERE "userId" = ANY($1::text[])`, [taken.map((r) => r.userId)]));
        const seqs = await lastSeqs(c, taken.map((r) => r.id));
        const order = new Map(eligible.map((h, i) => [h.id, i]));
        return taken
          .sort((a, b) => order.get(a.id)! - order.get(b.id)!)
          .map((r): ClaimedRun => ({ record: runRecordOfRow(r), lastSeq: seqs.get(r.id) ?? 0 }));
      }).catch(asUnavailable);
    },

    async noticeWaiting(runIds, build) {
      if (runIds.length === 0) return [];
      return inTransaction(pool, async (c) => {
        // SKIP LOCKED: a run locked now is being claimed or stopped, and needs no notice; waiting for it while
        // holding the others could deadlock with a claim locking the same runs in another order.
        const { rows } = await runs(c, `SELECT ${RUN_COLUMNS} FROM "Run" WHERE "id" = ANY($1::text[]) AND "status" = 'queued' AND "owner" IS NULL FOR UPDATE SKIP LOCKED`, [runIds]);
        if (rows.length === 0) return [];
        const { rows: ahead } = await c.query<{ id: string; n: string }>(
          sql(
            `SELECT r."id", (SELECT count(*) FROM "Run" AS w WHERE w."userId" = r."userId" AND w."status" = 'queued' AND w."owner" IS NULL AND w."queuedAt" <= r."queuedAt") AS "n" ` +
              `FROM "Run" AS r WHERE r."id" = ANY($1::text[])`,
            [rows.map((r) => r.id)],
          ),
        );
        const positions = new Map(ahead.map((a) => [a.id, Math.max(1, Number(a.n))]));
        const seqs = await lastSeqs(c, rows.map((r) => r.id));
        const events = rows.map((row) => build(runRecordOfRow(row), seqs.get(row.id) ?? 0, positions.get(row.id) ?? 1));
        await write(c, [{ kind: 'events', events, owner: null }]);
        return events;
      }).catch(asUnavailable);
    },

    async stop(userId, runId, build) {
      return inTransaction(pool, async (c) => {
        const { rows } = await runs(c, `SELECT ${RUN_COLUMNS} FROM "Run" WHERE "id" = $1 AND "userId" = $2 FOR UPDATE`, [runId, userId]);
        const row = rows[0];
        if (!row) return null;
        if (row.status !== 'queued' && row.status !== 'running') return { kind: 'over' as const };
        if (row.owner !== null) {
          await c.query(sql(`UPDATE "Run" SET "cancelRequested" = true WHERE "id" = $1`, [runId]));
          const { rows: nodes } = await c.query<{ nodeId: string }>(sql('SELECT "nodeId" FROM "Node" WHERE "id" = $1', [row.owner]));
          return { kind: 'held' as const, nodeId: nodes[0]?.nodeId ?? null };
        }
        const seqs = await lastSeqs(c, [row.id]);
        const finish = build(runRecordOfRow(row), seqs.get(row.id) ?? 0);
        await write(c, [{ kind: 'finish', row: finish, owner: null }]);
        return { kind: 'ended' as const, terminal: finish.terminal };
      }).catch(asUnavailable);
    },

    async release(lease, runIds) {
      if (runIds.length === 0) return;
      await pool.query(sql(`UPDATE "Run" SET "owner" = NULL, "status" = 'queued' WHERE "owner" = $1 AND "id" = ANY($2::text[]) AND "status" IN ${ACTIVE}`, [lease, runIds])).catch(asUnavailable);
    },

    async census() {
      const { rows } = await pool
        .query<{ queued: string; nodes: string }>(sql(`SELECT (SELECT count(*) FROM "Run" WHERE "status" = 'queued') AS "queued", (SELECT count(*) FROM "Node" WHERE "expiresAt" > ${NOW}) AS "nodes"`, []))
        .catch(asUnavailable);
      return { queued: Number(rows[0]!.queued), nodes: Math.max(1, Number(rows[0]!.nodes)) };
    },

    async close() {
      await Promise.all([pool.end(), leasePool.end()]).catch(() => undefined);
    },
  };
}
