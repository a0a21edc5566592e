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
 * The claim and an accept's checks are functions of the database (migrations 20261203000000_claim_function and
 * 20261204000000_claim_more): one round trip each, the same statements and locks inside.
 * Timestamps are database time as UTC (`now() AT TIME ZONE 'UTC'`, the TIMESTAMP(3) columns hold UTC).
 */
import { createHash, randomUUID } from 'node:crypto';
import pg from 'pg';
import { CodedError, messageOf } from '../../../protocol/errors.js';
import type { RunEventEnvelope } from '../../../protocol/events.js';
import type { ClaimedRun, ClusterStore, StoppedEnding, TakeoverDecision } from '../../cluster/cluster-store.js';
import type { Logger } from '../../logger.js';
import { RowMissingError } from '../run-writes.js';
import { acceptedRecordOf, acceptedRowOf, runRecordOf as runRecordOfRow, type RunRow as RunFields } from '../run-record.js';
import { createBackends, type Backend } from './backends.js';
import { explain, runStatements, type RunWrite } from './run-statements.js';
import { causeOfFailure, pipelinedTransaction, TransactionFailed } from './pipelined-transaction.js';
import { retryRolledBack } from './rolled-back.js';
import { unavailableError } from '../db-unavailable.js';
import { asUnavailable, isServerAnswer, isUnavailable } from './unavailable.js';

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
 * generic plans, see run-statements.ts. Named once, when this module loads (a hash per query cost a front 2% of
 * its CPU).
 */
function statement(text: string, types?: pg.CustomTypesConfig): (values: unknown[]) => pg.QueryConfig {
  const name = `atoll_q_${createHash('sha1').update(text).digest('hex').slice(0, 20)}`;
  return (values) => ({ name, text, values, ...(types ? { types } : {}) });
}

/**
 * The Run columns these statements read, named rather than `*`: a prepared statement whose result gains a
 * column (another node migrated the database) fails with "cached plan must not change result type".
 */
const RUN_FIELDS = ['id', 'threadId', 'userId', 'agentName', 'input', 'correlationId', 'requestId', 'status', 'errorCode', 'errorMessage', 'result', 'queuedAt', 'startedAt', 'finishedAt', 'cellId', 'workerId', 'attempts', 'report', 'replayOf', 'owner'] as const satisfies readonly (keyof RunRow)[];
const RUN_COLUMNS = RUN_FIELDS.map((f) => `"${f}"`).join(', ');

const NOW = `(now() AT TIME ZONE 'UTC')`;
const ACTIVE = `('queued', 'running')`;

const Q = {
  retireNode: statement(`UPDATE "Node" SET "expiresAt" = ${NOW} - interval '1 millisecond' WHERE "nodeId" = $1 AND "expiresAt" > ${NOW}`),
  adoptOrphans: statement(`UPDATE "Run" SET "owner" = $1 WHERE "owner" IS NULL AND "status" = 'running'`),
  // Runs a single node left waiting have no QueueUser row (a single node keeps its queue in memory): a claim, which
  // finds users through that table, would never see them.
  queueUsersOfWaiting: statement(`INSERT INTO "QueueUser" ("userId", "servedAt") SELECT DISTINCT "userId", ${NOW} FROM "Run" WHERE "status" = 'queued' AND "owner" IS NULL ON CONFLICT ("userId") DO NOTHING`),
  orphansNode: statement(`INSERT INTO "Node" ("id", "nodeId", "startedAt", "expiresAt") VALUES ($1, 'a single node', ${NOW}, ${NOW} - interval '1 millisecond')`),
  registerNode: statement(`INSERT INTO "Node" ("id", "nodeId", "startedAt", "expiresAt") VALUES ($1, $2, ${NOW}, ${NOW} + $3 * interval '1 millisecond')`),
  renew: statement(`UPDATE "Node" SET "expiresAt" = ${NOW} + $2 * interval '1 millisecond' WHERE "id" = $1 AND "expiresAt" > ${NOW}`),
  // At every renewal: each status by equality on Run("owner", "status"). An IN there could be planned as a scan of
  // every run the lease ever held (migration 20261207000000_queue_lookups_by_key).
  stopsAsked: statement(
    `SELECT "id" FROM "Run" WHERE "owner" = $1 AND "status" = 'queued' AND "cancelRequested" UNION ALL ` +
      `SELECT "id" FROM "Run" WHERE "owner" = $1 AND "status" = 'running' AND "cancelRequested"`,
  ),
  deleteNode: statement('DELETE FROM "Node" WHERE "id" = $1'),
  expiredNode: statement(`SELECT "id", "nodeId" FROM "Node" WHERE "expiresAt" <= ${NOW} ORDER BY "expiresAt" LIMIT 1 FOR UPDATE SKIP LOCKED`),
  ownedRuns: statement(`SELECT ${RUN_COLUMNS}, "cancelRequested" FROM "Run" WHERE "owner" = $1 AND "status" IN ${ACTIVE} ORDER BY "id" FOR UPDATE`, UTC_TYPES),
  requeue: statement(`UPDATE "Run" SET "owner" = NULL, "status" = 'queued' WHERE "id" = ANY($1::text[])`),
  // Runs ended as they are given back: no lease holds them any more, so any late write of this one is fenced.
  disown: statement(`UPDATE "Run" SET "owner" = NULL WHERE "id" = ANY($1::text[])`),
  lastSeqs: statement('SELECT "runId", max("seq") AS "last" FROM "RunEvent" WHERE "runId" = ANY($1::text[]) GROUP BY "runId"'),
  acceptCheck: statement('SELECT atoll_accept_check($1, $2, $3, $4) AS "busy"'),
  claim: statement(`SELECT ${RUN_COLUMNS}, "lastSeq", "more" FROM atoll_claim($1, $2, $3)`, UTC_TYPES),
  waitingRuns: statement(`SELECT ${RUN_COLUMNS} FROM "Run" WHERE "id" = ANY($1::text[]) AND "status" = 'queued' AND "owner" IS NULL FOR UPDATE SKIP LOCKED`, UTC_TYPES),
  // A run's place among its user's waiting runs, in the claim's order: by the first message id (given under the
  // user's lock, so in the order of the accepts), not by queuedAt (the accepting node's clock).
  positions: statement(
    `WITH "w" AS (SELECT w."id", w."userId", (SELECT min(m."id") FROM "Message" AS m WHERE m."runId" = w."id") AS "first" FROM "Run" AS w ` +
      `WHERE w."userId" IN (SELECT "userId" FROM "Run" WHERE "id" = ANY($1::text[])) AND w."status" = 'queued' AND w."owner" IS NULL) ` +
      `SELECT r."id", (SELECT count(*) FROM "w" AS o WHERE o."userId" = r."userId" AND o."first" <= r."first") AS "n" FROM "w" AS r WHERE r."id" = ANY($1::text[])`,
  ),
  lockRun: statement(`SELECT ${RUN_COLUMNS} FROM "Run" WHERE "id" = $1 AND "userId" = $2 FOR UPDATE`, UTC_TYPES),
  flagStop: statement(`UPDATE "Run" SET "cancelRequested" = true WHERE "id" = $1`),
  nodeOf: statement('SELECT "nodeId" FROM "Node" WHERE "id" = $1'),
  // An accept whose COMMIT's answer was lost, with its checks' answer: whether it committed, and if so the
  // conversation's unfinished runs accepted before it (what its check answered, less the runs that ended since).
  acceptedAfterAll: statement(
    `WITH "mine" AS (SELECT min(m."id") AS "first" FROM "Message" AS m WHERE m."runId" = $1) ` +
      `SELECT EXISTS (SELECT 1 FROM "Run" WHERE "id" = $1) AS "committed", coalesce((SELECT array_agg(r."id" ORDER BY r."id") FROM "Run" AS r, "mine" ` +
      `WHERE r."threadId" = $2 AND r."status" IN ${ACTIVE} AND r."id" <> $1 AND (SELECT min(m."id") FROM "Message" AS m WHERE m."runId" = r."id") < "mine"."first"), '{}') AS "busy"`,
  ),
  // The runs a lease gives back (locked: a stop flags them under the same lock): all it holds, those of `$2`, or
  // those waiting except `$2`.
  ownedOf: statement(`SELECT ${RUN_COLUMNS}, "cancelRequested" FROM "Run" WHERE "owner" = $1 AND "id" = ANY($2::text[]) AND "status" IN ${ACTIVE} ORDER BY "id" FOR UPDATE`, UTC_TYPES),
  ownedWaitingBut: statement(`SELECT ${RUN_COLUMNS}, "cancelRequested" FROM "Run" WHERE "owner" = $1 AND "status" = 'queued' AND NOT ("id" = ANY($2::text[])) ORDER BY "id" FOR UPDATE`, UTC_TYPES),
  xactId: statement('SELECT pg_current_xact_id()::text AS "xid"'),
  // NULL for a transaction too old for the commit log to tell, and (rather than an error that would hold up every
  // other doubt) for one the database has not reached: a doubt kept across a failover or a restore. The id this
  // statement takes is newer than every one given out before it (a snapshot's xmax is not: it may be the doubt's own).
  xactStatus: statement('SELECT x::text AS "xid", CASE WHEN x < pg_current_xact_id() THEN pg_xact_status(x) END AS "status" FROM unnest($1::xid8[]) AS x'),
  eventsWritten: statement('SELECT "id" FROM "RunEvent" WHERE "id" = ANY($1::text[])'),
  census: statement(`SELECT (SELECT count(*) FROM "Run" WHERE "status" = 'queued') AS "queued", (SELECT count(*) FROM "Node" WHERE "expiresAt" > ${NOW}) AS "nodes"`),
};

/** The queue's statements, for tests/postgresql/queue-cost.test.ts, which reads their plans. */
export const queueStatements = Q;

/**
 * Events a transaction wrote whose COMMIT's answer was lost: published once the database says it committed
 * (settleDoubts). Without this a terminal event written by a stop, a give-back or a takeover stayed unheard by the
 * user's sockets until they replayed for another reason: nothing follows a terminal event to reveal the gap.
 */
interface Doubt {
  /** The transaction's id (xid8, as text), asked before its COMMIT went out. */
  xid: string;
  events: RunEventEnvelope[];
  /** When its COMMIT was about to go out (Date.now()). */
  since: number;
}

/** At most this many doubts are kept while the database cannot be asked; the oldest are given up (logged). */
const MAX_DOUBTS = 10_000;
/**
 * A doubt whose transaction still reads as in progress this long is settled by its rows anyway: after a failover to a
 * standby that never had it, its id may name another transaction of the new primary. Long: a COMMIT held up this
 * long (a synchronous standby down) whose rows land later is published by nobody.
 */
const DOUBT_MAX_MS = 600_000;

/** What a transaction that publishes events keeps when its COMMIT's answer is lost: its events, by what it returned. */
interface Announced<T> {
  doubts: Doubt[];
  eventsOf: (result: T) => RunEventEnvelope[];
}

/** `work` in a transaction; done again from the start if the database rolls it back for a deadlock (rolled-back.ts). */
function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>, announced?: Announced<T>): Promise<T> {
  return retryRolledBack(() => inTransactionOnce(pool, work, announced));
}

async function inTransactionOnce<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>, announced?: Announced<T>): Promise<T> {
  const client = await pool.connect().catch(asUnavailable);
  // BEGIN goes out with the first statement (the connection is pipelined: pools.ts); when it fails, so does that.
  const begun = client.query('BEGIN');
  begun.catch(() => undefined);
  let doubt: Doubt | null = null;
  try {
    const value = await work(client);
    await begun;
    const events = announced?.eventsOf(value) ?? [];
    // Only a transaction that wrote events asks (one round trip more, on paths that are rare: a stop, a give-back
    // that ends runs, a takeover, the notices); asked of one that wrote nothing, it would take an id for nothing.
    if (events.length) doubt = { xid: (await client.query<{ xid: string }>(Q.xactId([]))).rows[0]!.xid, events, since: Date.now() };
    await client.query('COMMIT');
    return value;
  } catch (err) {
    // The COMMIT went out and its answer is not the server's: it may have committed, and its events with it.
    if (doubt && (isUnavailable(err) || !isServerAnswer(err))) announced!.doubts.push(doubt);
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/**
 * Puts the runs `owned` locks back in the shared queue, inside the caller's transaction, except those whose stop was
 * asked while this node held them: a node that no longer tracks a run (draining, or a claim it never heard the
 * answer of) could not act on the flag, and the next claim did not read it, so the run started elsewhere after its
 * stop was acknowledged (helper-78). Those end here, as `stopped` writes them, like a stop of a waiting run.
 */
async function giveBack(c: pg.PoolClient, owned: pg.QueryConfig, stopped: StoppedEnding): Promise<{ released: number; ended: RunEventEnvelope[] }> {
  const { rows } = await c.query<RunRow & { cancelRequested: boolean }>(owned);
  const flagged = rows.filter((r) => r.cancelRequested);
  const back = rows.filter((r) => !r.cancelRequested).map((r) => r.id);
  const ended: RunEventEnvelope[] = [];
  if (flagged.length) {
    const seqs = await lastSeqs(c, flagged.map((r) => r.id));
    const items: RunWrite[] = flagged.map((row) => {
      const finish = stopped(runRecordOfRow(row), seqs.get(row.id) ?? 0);
      ended.push(finish.terminal);
      return { kind: 'finish', row: finish, owner: null };
    });
    await write(c, items);
    await c.query(Q.disown([flagged.map((r) => r.id)]));
  }
  if (back.length) await c.query(Q.requeue([back]));
  return { released: back.length, ended };
}

/** Executes a batch of run writes (run-statements.ts) inside the caller's transaction. */
async function write(client: pg.PoolClient, items: RunWrite[]): Promise<void> {
  for (const s of runStatements(items)) await client.query({ name: s.name, text: s.text, values: s.values });
}

const lastSeqs = async (client: pg.PoolClient, runIds: string[]): Promise<Map<string, number>> => {
  const { rows } = await client.query<{ runId: string; last: number }>(Q.lastSeqs([runIds]));
  return new Map(rows.map((r) => [r.runId, Number(r.last)]));
};

/** What a failed accept tells its caller: a refusal of its checks, a missing thread, or the database unreachable. */
function refusal(err: unknown, item: RunWrite, userMaxQueuedRuns: number): unknown {
  const code = (err as { code?: unknown }).code;
  if (code === 'AT001') return new CodedError('OVERLOADED', `you have ${userMaxQueuedRuns} runs waiting (USER_MAX_QUEUED_RUNS); nothing was accepted`, { retryAfterSeconds: 5 });
  if (code === 'AT002' && item.kind === 'accept') return new CodedError('THREAD_BUSY', `thread ${item.row.threadId} has a run in progress (multitask "reject")`, { retryAfterSeconds: 1 });
  if (isUnavailable(err)) return unavailableError();
  const explained = explain(item, err);
  return explained instanceof RowMissingError ? new CodedError('NOT_FOUND', 'no such thread') : explained;
}

/**
 * `pool` serves the queue (accepts, claims, takeovers, stops); `leasePool` (one connection) only the lease: a
 * renewal must never wait behind a burst of accepts, or a busy node would lose its lease and its runs.
 */
export function createPgClusterStore(pool: pg.Pool, leasePool: pg.Pool, log: Pick<Logger, 'warn'>): ClusterStore {
  const backends = createBackends();
  /** Backends of claims whose answer was lost: ended before releaseUnknown reads what they took. */
  let claimsInDoubt: Backend[] = [];
  const doubts: Doubt[] = [];
  /** inTransaction, for one whose events (`eventsOf` its result) are published: kept in doubt if its COMMIT's answer is lost. */
  const announcing = <T>(work: (client: pg.PoolClient) => Promise<T>, eventsOf: (result: T) => RunEventEnvelope[]): Promise<T> => inTransaction(pool, work, { doubts, eventsOf });
  return {
    async register(nodeId, leaseMs) {
      const lease = randomUUID();
      return inTransaction(leasePool, async (c) => {
        const { rowCount } = await c.query(Q.retireNode([nodeId]));
        // Runs a single node left running when it stopped (before this database served several nodes) belong to
        // no lease: they are given one that has expired already, so the next takeover treats them like a dead node's.
        const orphans = `orphans-${randomUUID()}`;
        const { rowCount: orphaned } = await c.query(Q.adoptOrphans([orphans]));
        if (orphaned) await c.query(Q.orphansNode([orphans]));
        await c.query(Q.queueUsersOfWaiting([]));
        await c.query(Q.registerNode([lease, nodeId, leaseMs]));
        return { lease, replaced: rowCount ?? 0 };
      });
    },

    async renew(lease, leaseMs) {
      const { rowCount } = await leasePool.query(Q.renew([lease, leaseMs]));
      if (!rowCount) return { alive: false, stopsAsked: [] };
      const { rows } = await leasePool.query<{ id: string }>(Q.stopsAsked([lease]));
      return { alive: true, stopsAsked: rows.map((r) => r.id) };
    },

    async deregister(lease, stopped) {
      return announcing(async (c) => {
        // The row first: its DELETE waits for a claim of this lease still under way (it holds the row in KEY
        // SHARE), so the requeue after it sees that claim's takes; in the other order they would be left owned by
        // a lease no row names, which no takeover ever finds.
        await c.query(Q.deleteNode([lease]));
        return (await giveBack(c, Q.ownedRuns([lease]), stopped)).ended;
      }, (ended) => ended);
    },

    async takeOverExpired(decide) {
      return announcing(async (c) => {
        const { rows: nodes } = await c.query<{ id: string; nodeId: string }>(Q.expiredNode([]));
        const node = nodes[0];
        if (!node) return null;
        const { rows } = await c.query<RunRow & { cancelRequested: boolean }>(Q.ownedRuns([node.id]));
        const seqs = await lastSeqs(c, rows.map((r) => r.id));
        const events: RunEventEnvelope[] = [];
        const items: RunWrite[] = [];
        const back: string[] = [];
        for (const row of rows) {
          const decision: TakeoverDecision = decide(runRecordOfRow(row), seqs.get(row.id) ?? 0, node.nodeId, row.cancelRequested);
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
        if (back.length) await c.query(Q.requeue([back]));
        await c.query(Q.deleteNode([node.id]));
        return { nodeId: node.nodeId, events, requeued: back.length };
      }, (taken) => taken?.events ?? []);
    },

    async accept(run, check) {
      const row = acceptedRowOf(run);
      const item: RunWrite = { kind: 'accept', row };
      const client = await pool.connect().catch(asUnavailable);
      let backend: Backend | undefined;
      try {
        // Known before anything is sent: the backend to end if the COMMIT's answer is lost.
        backend = await backends.of(client);
        // BEGIN, the checks under the user's lock (which refuse by themselves, aborting the rest: see the migration
        // 20261204000000_queue_round_trips), the writes and COMMIT in one round trip.
        // Rolled back for a deadlock (another transaction locking the same user or conversation): sent again.
        const statements = [Q.acceptCheck([row.userId, row.threadId, check.userMaxQueuedRuns, check.rejectIfBusy]), ...runStatements([item])];
        const [checked] = await retryRolledBack(() => pipelinedTransaction(client, statements), causeOfFailure);
        client.release();
        return { record: acceptedRecordOf(run), busy: (checked!.rows[0] as { busy: string[] }).busy };
      } catch (err) {
        const cause = causeOfFailure(err);
        // The connection lost with COMMIT sent (or anything raised on this side rather than answered by the server):
        // it may have happened, and then the run is in the shared queue and will run.
        const inDoubt = err instanceof TransactionFailed && err.sent && backend !== undefined && (isUnavailable(cause) || !isServerAnswer(cause));
        client.release(isUnavailable(cause) || inDoubt ? (cause as Error) : undefined);
        // Ask (on another connection, once the old one's backend has ended: it could still be executing that COMMIT)
        // rather than tell the client nothing was accepted; if that fails too, DB_UNAVAILABLE says a retry with the
        // same correlation_id is safe, which holds either way.
        if (inDoubt) {
          if (!isUnavailable(cause)) log.warn({ run_id: row.id, err: messageOf(cause) }, "an accept's COMMIT failed on this side after it was sent: it may have happened, so it is looked up");
          const ending = await backends.end(pool, backend!).catch((err: unknown) => {
            if (!isUnavailable(err)) log.warn({ run_id: row.id, err: messageOf(err) }, 'ending the connection of an accept in doubt failed; refused with DB_UNAVAILABLE');
            return 'alive' as const;
          });
          if (ending === 'not-allowed') log.warn({ run_id: row.id, pid: backend!.pid }, "the connection of an accept in doubt cannot be ended (the database role may not signal it: grant it pg_signal_backend); it is looked up now, and a COMMIT the server still holds could land after");
          const found = ending === 'alive' ? null : await pool.query<{ committed: boolean; busy: string[] }>(Q.acceptedAfterAll([row.id, row.threadId ?? row.newThreadId])).then(
            (r) => r.rows[0]!,
            (err: unknown) => {
              if (!isUnavailable(err)) log.warn({ run_id: row.id, err: messageOf(err) }, 'looking up an accept in doubt failed; refused with DB_UNAVAILABLE');
              return null;
            },
          );
          if (found?.committed) return { record: acceptedRecordOf(run), busy: found.busy };
          throw unavailableError();
        }
        throw refusal(cause, item, check.userMaxQueuedRuns);
      }
    },

    async claim(lease, max, userMaxConcurrentRuns) {
      if (max <= 0) return { runs: [], more: false };
      const client = await pool.connect().catch(asUnavailable);
      let backend: Backend | undefined;
      let rows: (RunRow & { lastSeq: number; more: boolean })[];
      try {
        backend = await backends.of(client);
        // One statement, its own transaction: the locks, the takes and the reads are atoll_claim's (see the migrations).
        ({ rows } = await retryRolledBack(() => client.query<RunRow & { lastSeq: number; more: boolean }>(Q.claim([lease, max, userMaxConcurrentRuns]))));
        client.release();
      } catch (err) {
        const lost = isUnavailable(err);
        client.release(lost ? (err as Error) : undefined);
        if (lost && backend) claimsInDoubt.push(backend);
        return asUnavailable(err);
      }
      return {
        runs: rows.map(({ lastSeq, more: _, ...r }): ClaimedRun => ({ record: runRecordOfRow(r), lastSeq: Number(lastSeq) })),
        more: rows[0]?.more === true,
      };
    },

    async releaseUnknown(lease, known, stopped) {
      // A claim given up on may still be executing on the server: what it takes after this look would stay unknown.
      for (const backend of [...claimsInDoubt]) {
        // Not ended for a reason waiting cannot cure (a bug, a setting): look anyway rather than never claim again.
        const ending = await backends.end(pool, backend).catch((err: unknown) => {
          if (isUnavailable(err)) return asUnavailable(err);
          log.warn({ err: messageOf(err) }, 'ending the connection of a claim in doubt failed; its runs are released anyway');
          return 'not-allowed' as const;
        });
        if (ending === 'alive') throw unavailableError();
        claimsInDoubt = claimsInDoubt.filter((b) => b !== backend);
      }
      return announcing((c) => giveBack(c, Q.ownedWaitingBut([lease, known]), stopped), (r) => r.ended).catch(asUnavailable);
    },

    async noticeWaiting(runIds, build) {
      if (runIds.length === 0) return [];
      return announcing(async (c) => {
        // SKIP LOCKED: a run locked now is being claimed or stopped, and needs no notice; waiting for it while
        // holding the others could deadlock with a claim locking the same runs in another order.
        const { rows } = await c.query<RunRow>(Q.waitingRuns([runIds]));
        if (rows.length === 0) return [];
        const { rows: ahead } = await c.query<{ id: string; n: string }>(Q.positions([rows.map((r) => r.id)]));
        const positions = new Map(ahead.map((a) => [a.id, Math.max(1, Number(a.n))]));
        const seqs = await lastSeqs(c, rows.map((r) => r.id));
        const events = rows.map((row) => build(runRecordOfRow(row), seqs.get(row.id) ?? 0, positions.get(row.id) ?? 1));
        await write(c, [{ kind: 'events', events, owner: null }]);
        return events;
      }, (events) => events).catch(asUnavailable);
    },

    async stop(userId, runId, build) {
      return announcing(async (c) => {
        const { rows } = await c.query<RunRow>(Q.lockRun([runId, userId]));
        const row = rows[0];
        if (!row) return null;
        if (row.status !== 'queued' && row.status !== 'running') return { kind: 'over' as const };
        if (row.owner !== null) {
          await c.query(Q.flagStop([runId]));
          const { rows: nodes } = await c.query<{ nodeId: string }>(Q.nodeOf([row.owner]));
          return { kind: 'held' as const, nodeId: nodes[0]?.nodeId ?? null };
        }
        const seqs = await lastSeqs(c, [row.id]);
        const finish = build(runRecordOfRow(row), seqs.get(row.id) ?? 0);
        await write(c, [{ kind: 'finish', row: finish, owner: null }]);
        return { kind: 'ended' as const, terminal: finish.terminal };
      }, (outcome) => (outcome?.kind === 'ended' ? [outcome.terminal] : [])).catch(asUnavailable);
    },

    async release(lease, runIds, stopped) {
      if (runIds.length === 0) return [];
      return (await announcing((c) => giveBack(c, Q.ownedOf([lease, runIds]), stopped), (r) => r.ended).catch(asUnavailable)).ended;
    },

    async settleDoubts() {
      if (doubts.length > MAX_DOUBTS) {
        log.warn({ given_up: doubts.length - MAX_DOUBTS }, "events of transactions whose COMMIT's answer was lost are given up unpublished (the database could not be asked for too long); their runs' sockets hear them when they replay");
        doubts.splice(0, doubts.length - MAX_DOUBTS);
      }
      if (doubts.length === 0) return { events: [], pending: 0 };
      const asked = doubts.slice();
      const { rows } = await pool.query<{ xid: string; status: string | null }>(Q.xactStatus([asked.map((d) => d.xid)])).catch(asUnavailable);
      const status = new Map(rows.map((r) => [r.xid, r.status]));
      // Still in progress (its backend has not finished that COMMIT yet): asked again next time.
      const settled = asked.filter((d) => status.get(d.xid) !== 'in progress' || Date.now() - d.since > DOUBT_MAX_MS);
      if (settled.length === 0) return { events: [], pending: doubts.length };
      // What committed is what the log holds, whatever the status said (an id the database does not know, one too old
      // for its commit log, one that names another transaction after a failover): event ids are random, so a row
      // with one is that event.
      const { rows: found } = await pool.query<{ id: string }>(Q.eventsWritten([settled.flatMap((d) => d.events.map((e) => e.event_id))])).catch(asUnavailable);
      const written = new Set(found.map((r) => r.id));
      const done = new Set(settled);
      doubts.splice(0, doubts.length, ...doubts.filter((d) => !done.has(d)));
      return { events: settled.flatMap((d) => d.events.filter((e) => written.has(e.event_id))), pending: doubts.length };
    },

    async census() {
      const { rows } = await pool.query<{ queued: string; nodes: string }>(Q.census([])).catch(asUnavailable);
      return { queued: Number(rows[0]!.queued), nodes: Math.max(1, Number(rows[0]!.nodes)) };
    },

    async close() {
      await Promise.all([pool.end(), leasePool.end()]).catch(() => undefined);
    },
  };
}
