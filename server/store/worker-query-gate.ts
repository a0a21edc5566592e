/**
 * The front's gate for workers' database statements. A worker's Prisma client has no connection of
 * its own: its adapter forwards each statement over the run's port, its cell tags it with the run's id, and
 * it lands here. One job: execute only the statements ctx.db's queries compile to (prisma/scoped-queries.ts),
 * pinned to the run's user as the front knows it, and answer with Prisma's own result set.
 *
 * The allowed statements are learned at start-up: the scoped queries run once against a Prisma client
 * whose adapter records each statement and answers empty result sets, with a sentinel user id. Each learned
 * statement is its SQL text, its argument types, and the argument positions that held the sentinel. A
 * forwarded statement runs only if (a) its run is live, assigned to the sending cell and running, (b) its
 * SQL text is a learned one, (c) its arguments have the learned shape, and (d) every sentinel position holds
 * the run's own user id. Anything else is answered with an error, counted, and logged once per run and reason
 * (never its values). What passes runs one statement of a run at a time, at the run's pace (gate-admission.ts).
 */
import { randomUUID } from 'node:crypto';
import type { SqlDriverAdapter, SqlDriverAdapterFactory, SqlQuery, SqlResultSet } from '@prisma/driver-adapter-utils';
import { z } from 'zod';
import type { Db } from '../../prisma/client-type.js';
import { exerciseScopedQueries, MAX_ROWS, type Stand } from '../../prisma/scoped-queries.js';
import type { StoreBackend } from './backend.js';
import { answerBytes, createGateAdmission, GATE_LIMITS, type GateAdmission } from './gate-admission.js';
import type { CellHandle } from '../cells/cell-handle.js';
import type { Logger } from '../logger.js';
import { MAX_ARGS, MAX_SQL_CHARS, type DbAnswer, type DbQueryKind, type RefusalReason } from '../../protocol/db-messages.js';
import type { LiveRun } from '../runs/live-run.js';
import { messageOf } from '../../protocol/errors.js';


export interface LearnedStatement {
  /** For log lines: the position of the statement in the learning order. */
  index: number;
  kind: DbQueryKind;
  sql: string;
  argTypes: { scalarType: string; dbType: string | null; arity: string }[];
  /** Argument positions that must hold the run's user id. */
  userArgs: number[];
  /**
   * A page of a thread's messages (ctx.db's messages.list): where its thread, cursor, row count and offset are. The
   * gate lowers the row count to what fits in MAX_ANSWER_BYTES before it runs the statement.
   */
  messagePage: { threadArg: number; afterArg: number; limitArg: number; offsetArg: number | null } | null;
}

/** The most content one messages.list answer carries (at least one message): a page of the HTTP API's size. */
export const MAX_ANSWER_BYTES = 1024 * 1024;

/** Stand-in cursor and row count: values no scoped query would otherwise pass, so their positions are unambiguous. */
const STAND_AFTER_ID = 1_234_567_891;
const STAND_LIMIT = 47;

const MAX_STRING_ARG_CHARS = 4096;

const normaliseArgType = (t: { scalarType: string; dbType?: string | null; arity: string }) => ({ scalarType: t.scalarType, dbType: t.dbType ?? null, arity: t.arity });

/**
 * Runs every scoped query once against a recording adapter and returns the statements they compile to, for
 * the database's own provider and generated client (a client refuses an adapter of another provider).
 * Throws (the front refuses to start) if a statement does not carry the sentinel user id as an argument,
 * or carries it (or the stand-in thread id) inside its SQL text.
 */
export async function learnStatements(
  database: Pick<StoreBackend, 'provider' | 'prismaClient'>,
  exercise: (prisma: Db, userId: string, stand: Stand) => Promise<unknown> = exerciseScopedQueries,
): Promise<LearnedStatement[]> {
  const { provider } = database;
  const sentinel = `atoll-sentinel-user-${randomUUID()}`;
  const standThread = `atoll-sentinel-thread-${randomUUID()}`;
  const recorded: { kind: DbQueryKind; query: SqlQuery }[] = [];
  const empty: SqlResultSet = { columnNames: [], columnTypes: [], rows: [] };
  const recorder: SqlDriverAdapter = {
    provider,
    adapterName: '@atoll/statement-recorder',
    queryRaw: async (query) => (recorded.push({ kind: 'query', query }), empty),
    executeRaw: async (query) => (recorded.push({ kind: 'execute', query }), 0),
    executeScript: async () => {
      throw new Error('the scoped queries ran a script');
    },
    startTransaction: async () => {
      throw new Error('the scoped queries opened a transaction');
    },
    dispose: async () => undefined,
  };
  const factory: SqlDriverAdapterFactory = { provider, adapterName: recorder.adapterName, connect: async () => recorder };
  const prisma = database.prismaClient(factory);
  try {
    await exercise(prisma, sentinel, { threadId: standThread, afterId: STAND_AFTER_ID, limit: STAND_LIMIT });
  } finally {
    await prisma.$disconnect();
  }
  if (recorded.length === 0) throw new Error('worker query gate: the scoped queries compiled to no statement');
  const learned = new Map<string, LearnedStatement>();
  for (const { kind, query } of recorded) {
    if (query.sql.includes(sentinel) || query.sql.includes(standThread)) {
      throw new Error(`worker query gate: a scoped query inlines a value into its SQL text (statement ${learned.size}); refusing to start`);
    }
    const userArgs = query.args.flatMap((a, i) => (a === sentinel ? [i] : []));
    if (userArgs.length === 0) throw new Error(`worker query gate: a scoped query's statement is not pinned to a user (no user id argument): ${query.sql}`);
    const statement: LearnedStatement = { index: learned.size, kind, sql: query.sql, argTypes: query.argTypes.map(normaliseArgType), userArgs, messagePage: messagePageOf(query, standThread) };
    const key = `${kind}\u0000${query.sql}`;
    const seen = learned.get(key);
    if (seen && JSON.stringify([seen.argTypes, seen.userArgs]) !== JSON.stringify([statement.argTypes, statement.userArgs])) {
      throw new Error(`worker query gate: one SQL text compiled with two argument shapes: ${query.sql}`);
    }
    if (!seen) learned.set(key, statement);
  }
  return [...learned.values()];
}

const numberOf = (v: unknown) => (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'string' ? Number(v) : NaN);

/** Where a page of messages holds its thread, cursor, row count and offset (the other row count), or null. */
function messagePageOf(query: SqlQuery, standThread: string): LearnedStatement['messagePage'] {
  const threadArg = query.args.indexOf(standThread);
  const afterArg = query.args.findIndex((a, i) => query.argTypes[i]?.scalarType === 'int' && numberOf(a) === STAND_AFTER_ID);
  const limitArg = query.args.findIndex((a, i) => query.argTypes[i]?.scalarType === 'bigint' && numberOf(a) === STAND_LIMIT);
  if (threadArg < 0 || afterArg < 0 || limitArg < 0) return null;
  const offsetArg = query.args.findIndex((_, i) => i !== limitArg && query.argTypes[i]?.scalarType === 'bigint');
  return { threadArg, afterArg, limitArg, offsetArg: offsetArg < 0 ? null : offsetArg };
}

/** `value` with `like`'s representation (the driver adapter's bigint arguments arrive as numbers, bigints or strings). */
function sameKind(like: unknown, value: number): unknown {
  return typeof like === 'bigint' ? BigInt(value) : typeof like === 'string' ? String(value) : value;
}

/** The boundary: a cell's message, validated before anything in it is used. */
const ArgTypeSchema = z.object({ scalarType: z.string().max(32), dbType: z.string().max(64).nullable().optional(), arity: z.string().max(16) });
const DbQueryMessage = z.object({
  type: z.literal('db_query'),
  runId: z.string().min(1).max(128),
  queryId: z.number().int().nonnegative(),
  kind: z.enum(['query', 'execute']),
  query: z.object({
    sql: z.string().max(MAX_SQL_CHARS),
    args: z.array(z.unknown()).max(MAX_ARGS),
    argTypes: z.array(ArgTypeSchema).max(MAX_ARGS),
  }),
});

const isRowCount = (v: unknown) =>
  (typeof v === 'string' && /^\d{1,4}$/.test(v) && Number(v) <= MAX_ROWS) || (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_ROWS) || (typeof v === 'bigint' && v >= 0n && v <= BigInt(MAX_ROWS));

/** Does this argument value fit its learned type? Only the types the scoped queries compile to are known. */
function argFits(value: unknown, type: LearnedStatement['argTypes'][number]): boolean {
  if (type.arity !== 'scalar') return false;
  switch (type.scalarType) {
    // NUL: PostgreSQL's text cannot hold it (the statement would fail there); no stored id contains it anyway.
    case 'string':
      return typeof value === 'string' && value.length <= MAX_STRING_ARG_CHARS && !value.includes('\u0000');
    // Prisma's Int is 32 bits on every database; beyond it PostgreSQL fails the statement (SQLite would run it).
    case 'int':
      return typeof value === 'number' && Number.isInteger(value) && value >= -(2 ** 31) && value < 2 ** 31;
    // In the scoped queries, bigint arguments are LIMIT and OFFSET: row counts, bounded like ctx.db's limit.
    case 'bigint':
      return isRowCount(value);
    default:
      return false;
  }
}

/** What a refused statement's error tells agent code. */
const REFUSAL_MEANING: Record<RefusalReason, string> = {
  invalid_message: 'malformed statement',
  run_not_running: 'worker threads may run only ctx.db\'s queries, for their run\'s user, while their run runs',
  statement_not_allowed: 'worker threads may run only ctx.db\'s queries, for their run\'s user',
  invalid_args: 'worker threads may run only ctx.db\'s queries, for their run\'s user',
  user_mismatch: 'worker threads may run only ctx.db\'s queries, for their run\'s user',
  too_many_waiting: `a run's ctx.db calls run one at a time, and at most ${GATE_LIMITS.maxWaiting} may wait: await some before making more`,
};

export interface WorkerQueryGate {
  /** A cell's `db_query` message; answers the cell (or drops an unanswerable message), never throws. */
  handle(cell: CellHandle, msg: unknown, runOf: (runId: string) => LiveRun | undefined): void;
}

export function createWorkerQueryGate(deps: {
  /**
   * What it may execute, once learned (learnStatements, at start-up while the cells start): a statement that
   * arrives earlier waits for it. A failed learning stops the start, so nothing waits forever.
   */
  statements: Promise<LearnedStatement[]>;
  /** The front's own database connection (Prisma's adapter), where allowed statements run. */
  connection: () => Promise<SqlDriverAdapter>;
  /** The database cannot be reached (the worker gets DB_UNAVAILABLE, retryable, instead of DB_QUERY_FAILED). */
  isUnavailable: (err: unknown) => boolean;
  onRefused: (reason: RefusalReason) => void;
  log: Logger;
  /** Default: GATE_LIMITS. */
  admission?: GateAdmission;
  /** RunStore.messagesFitting: how many rows of a page of messages fit in MAX_ANSWER_BYTES. */
  messagesFitting: (threadId: string, afterId: number, offset: number, limit: number, maxBytes: number) => Promise<number>;
}): WorkerQueryGate {
  const admission = deps.admission ?? createGateAdmission();
  const bySql = new Map<string, LearnedStatement>();
  let learned = false;
  const ready = deps.statements.then((list) => {
    for (const s of list) bySql.set(`${s.kind}\u0000${s.sql}`, s);
    learned = true;
  });
  ready.catch(() => undefined);

  function check(msg: z.infer<typeof DbQueryMessage>, run: LiveRun | undefined, cell: CellHandle): { refused: RefusalReason } | { statement: LearnedStatement; run: LiveRun } {
    if (!run || run.cellId !== cell.id || run.phase !== 'running') return { refused: 'run_not_running' };
    const statement = bySql.get(`${msg.kind}\u0000${msg.query.sql}`);
    if (!statement) return { refused: 'statement_not_allowed' };
    const { args, argTypes } = msg.query;
    if (args.length !== statement.argTypes.length || argTypes.length !== statement.argTypes.length) return { refused: 'invalid_args' };
    for (let i = 0; i < args.length; i++) {
      const learned = statement.argTypes[i]!;
      const given = normaliseArgType(argTypes[i]!);
      if (given.scalarType !== learned.scalarType || given.dbType !== learned.dbType || given.arity !== learned.arity) return { refused: 'invalid_args' };
      if (!argFits(args[i], learned)) return { refused: 'invalid_args' };
    }
    for (const i of statement.userArgs) if (args[i] !== run.userId) return { refused: 'user_mismatch' };
    return { statement, run };
  }

  function answer(cell: CellHandle, runId: string, queryId: number, a: DbAnswer) {
    cell.send({ type: 'db_answer', runId, queryId, ...a });
  }

  const gate: WorkerQueryGate = {
    handle(cell, raw, runOf) {
      if (!learned) {
        void ready.then(() => gate.handle(cell, raw, runOf));
        return;
      }
      const parsed = DbQueryMessage.safeParse(raw);
      if (!parsed.success) {
        deps.onRefused('invalid_message');
        const r = raw as { runId?: unknown; queryId?: unknown };
        const runId = typeof r?.runId === 'string' ? r.runId : null;
        if (firstRefusal(runId === null ? undefined : runOf(runId), 'invalid_message')) deps.log.warn({ cell: cell.id, run_id: runId, reason: 'invalid_message' }, 'thread db query refused');
        // Answer when the message says where to: the worker is not left waiting until its run ends.
        if (runId && typeof r.queryId === 'number' && Number.isInteger(r.queryId) && r.queryId >= 0) {
          answer(cell, runId, r.queryId, { ok: false, error: { code: 'DB_QUERY_REFUSED', message: 'database query refused: malformed statement' } });
        }
        return;
      }
      const msg = parsed.data;
      const run = runOf(msg.runId);
      const verdict = check(msg, run, cell);
      if ('refused' in verdict) return refuse(cell, msg, run, verdict.refused);
      const { statement, run: live } = verdict;
      const query: SqlQuery = { sql: msg.query.sql, args: msg.query.args, argTypes: msg.query.argTypes as SqlQuery['argTypes'] };
      const refusal = admission.admit(live, async () => {
        // It waited behind the run's earlier statements: the run may have ended meanwhile.
        if (live.phase !== 'running' || live.cellId !== cell.id) {
          refuse(cell, msg, live, 'run_not_running');
          return 0;
        }
        try {
          await fitToAnswer(query, statement);
          const db = await deps.connection();
          const result = msg.kind === 'query' ? await db.queryRaw(query) : await db.executeRaw(query);
          answer(cell, msg.runId, msg.queryId, { ok: true, result });
          return answerBytes(result);
        } catch (err) {
          deps.log.warn({ run_id: msg.runId, user_id: live.userId, cell: cell.id, statement: statement.index, err: messageOf(err) }, 'thread db query failed');
          const error = deps.isUnavailable(err)
            ? { code: 'DB_UNAVAILABLE' as const, message: 'the database cannot be reached right now; retry shortly' }
            : { code: 'DB_QUERY_FAILED' as const, message: `database query failed: ${messageOf(err)}` };
          answer(cell, msg.runId, msg.queryId, { ok: false, error });
          return 0;
        }
      });
      if (refusal) refuse(cell, msg, live, refusal);
    },
  };

  /**
   * A page of messages is read only as far as MAX_ANSWER_BYTES goes: its row count is lowered to the rows that fit
   * (their stored sizes, read first). A message may hold MAX_RESULT_BYTES, and 100 of them were read whole for one
   * call. The statement is still the learned one: only its LIMIT argument is smaller.
   */
  async function fitToAnswer(query: SqlQuery, statement: LearnedStatement): Promise<void> {
    const page = statement.messagePage;
    if (!page) return;
    const limit = numberOf(query.args[page.limitArg]);
    const offset = page.offsetArg === null ? 0 : numberOf(query.args[page.offsetArg]);
    const fitting = await deps.messagesFitting(String(query.args[page.threadArg]), numberOf(query.args[page.afterArg]), offset, limit, MAX_ANSWER_BYTES);
    if (fitting < limit) {
      const args = [...query.args];
      args[page.limitArg] = sameKind(query.args[page.limitArg], Math.max(fitting, 1));
      query.args = args;
    }
  }

  /**
   * Notes the refusal in the run's report; true the first time for this run and reason. Refusals are logged once
   * per run and reason (the metric counts every one): a run repeating a refused statement must not write the
   * front's log at its own pace.
   */
  function firstRefusal(run: LiveRun | undefined, reason: RefusalReason): boolean {
    if (!run) return true;
    const first = !run.refused.has(`db:${reason}`);
    run.refused.add(`db:${reason}`);
    return first;
  }

  function refuse(cell: CellHandle, msg: z.infer<typeof DbQueryMessage>, run: LiveRun | undefined, reason: RefusalReason): void {
    deps.onRefused(reason);
    if (firstRefusal(run, reason)) {
      const known = bySql.get(`${msg.kind}\u0000${msg.query.sql}`);
      deps.log.warn(
        { run_id: msg.runId, user_id: run?.userId ?? null, thread_id: run?.threadId ?? null, cell: cell.id, reason, statement: known?.index ?? null, sql_chars: msg.query.sql.length, args: msg.query.args.length },
        'thread db query refused',
      );
    }
    answer(cell, msg.runId, msg.queryId, { ok: false, error: { code: 'DB_QUERY_REFUSED', message: `database query refused (${reason}): ${REFUSAL_MEANING[reason]}` } });
  }
  return gate;
}
