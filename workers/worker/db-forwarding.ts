/**
 * How a worker's Prisma client reaches the database: through the front. Its driver adapter opens
 * nothing; every statement Prisma compiles is posted over the current run's MessagePort to the cell, which
 * tags it with that run's id and sends it to the front's gate (server/store/worker-query-gate.ts). The gate
 * executes only the statements ctx.db compiles to, pinned to the run's user, and answers with Prisma's own
 * result set. No run in progress, or its context released: the statement fails here, unsent.
 *
 * This file and everything it imports must never load a database driver: agent code runs in this worker.
 */
import type { MessagePort } from 'node:worker_threads';
import type { Provider, SqlDriverAdapter, SqlDriverAdapterFactory, SqlQuery, SqlResultSet, Transaction } from '@prisma/driver-adapter-utils';
import type { Db } from '../../prisma/client-type.js';
import { queryCompilerFrom } from '../../prisma/query-compiler-loader.js';
import type { DbProvider } from '../../protocol/cell-messages.js';
import type { DbErrorCode, DbQueryKind, ForwardedResultSet } from '../../protocol/db-messages.js';
import type { CellToWorker, WorkerToCell } from '../../protocol/worker-messages.js';

export const FORWARDING_ADAPTER_NAME = '@atoll/forwarding-adapter';

/** An error Prisma passes on to the caller with its `code` (as a PrismaClientKnownRequestError). */
export class DbForwardingError extends Error {
  constructor(
    readonly code: DbErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'DbForwardingError';
  }
}

interface Pending {
  resolve(value: ForwardedResultSet | number): void;
  reject(err: Error): void;
}

/** The worker's one link to the database: the current run's port, or none. */
export interface DbChannel {
  /** A run starts on this worker: statements go over its port from now on. */
  attach(port: MessagePort): void;
  /** The run's context is released: its statements fail from now on, those still waiting too. */
  release(): void;
  /** A `db_answer` arrived on the run's port. */
  answer(msg: Extract<CellToWorker, { type: 'db_answer' }>): void;
  send(kind: DbQueryKind, query: SqlQuery): Promise<ForwardedResultSet | number>;
  /**
   * Prisma's query compiler as the cell compiled it: given at start, or asked for over the run's port; null when
   * there is no run, the run ends first, or the cell has none: Prisma then compiles its own.
   */
  queryCompiler(): Promise<WebAssembly.Module | null>;
  /** The cell's answer to queryCompiler(). */
  answerQueryCompiler(module: WebAssembly.Module | null): void;
}

const NO_RUN = 'no run in progress on this worker thread: the database is reached only through ctx.db, during a run';
const RELEASED = 'ctx.db used after the run ended: the execution context is released';

/** `queryCompiler`: the cell's, given at start (WORKER_DB_WARMUP=eager); otherwise asked for over a run's port. */
export function createDbChannel(queryCompiler: WebAssembly.Module | null = null): DbChannel {
  let state: 'idle' | 'attached' | 'released' = 'idle';
  let port: MessagePort | null = null;
  let pending = new Map<number, Pending>();
  let nextId = 1;
  // Waiting for the cell's query compiler: answered, or null when the run's port goes.
  let compilerWaiters: ((module: WebAssembly.Module | null) => void)[] = [];
  const answerCompiler = (module: WebAssembly.Module | null) => {
    const waiting = compilerWaiters;
    compilerWaiters = [];
    for (const w of waiting) w(module);
  };

  const refusal = () => (state === 'idle' ? new DbForwardingError('DB_NO_RUN', NO_RUN) : new DbForwardingError('DB_RUN_RELEASED', RELEASED));

  return {
    attach(runPort) {
      port = runPort;
      pending = new Map();
      state = 'attached';
    },
    release() {
      if (state !== 'attached') return;
      state = 'released';
      port = null;
      const waiting = pending;
      pending = new Map();
      for (const p of waiting.values()) p.reject(refusal());
      answerCompiler(null);
    },
    queryCompiler() {
      if (queryCompiler) return Promise.resolve(queryCompiler);
      if (state !== 'attached' || !port) return Promise.resolve(null);
      const first = compilerWaiters.length === 0;
      const answered = new Promise<WebAssembly.Module | null>((resolve) => compilerWaiters.push(resolve));
      if (first) {
        try {
          port.postMessage({ type: 'query_compiler' } satisfies WorkerToCell);
        } catch {
          answerCompiler(null);
        }
      }
      return answered;
    },
    answerQueryCompiler(module) {
      // Only the cell's own WebAssembly.Module: the port is the cell's, but a wrong value must not reach Prisma.
      answerCompiler(module instanceof WebAssembly.Module ? module : null);
    },
    answer(msg) {
      const p = pending.get(msg.id);
      if (!p) return;
      pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.result);
      else p.reject(new DbForwardingError(msg.error.code, msg.error.message));
    },
    send(kind, query) {
      if (state !== 'attached' || !port) return Promise.reject(refusal());
      const id = nextId++;
      const out: WorkerToCell = { type: 'db_query', id, kind, query: { sql: query.sql, args: query.args, argTypes: query.argTypes } };
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        try {
          port!.postMessage(out);
        } catch (err) {
          pending.delete(id);
          reject(err as Error);
        }
      });
    },
  };
}

class ForwardingAdapter implements SqlDriverAdapter {
  readonly adapterName = FORWARDING_ADAPTER_NAME;
  constructor(
    readonly provider: Provider,
    private readonly channel: DbChannel,
  ) {}

  async queryRaw(query: SqlQuery): Promise<SqlResultSet> {
    const result = await this.channel.send('query', query);
    if (typeof result === 'number') throw new DbForwardingError('DB_QUERY_FAILED', 'the front answered a row count to a query');
    return result as SqlResultSet;
  }

  async executeRaw(query: SqlQuery): Promise<number> {
    const result = await this.channel.send('execute', query);
    if (typeof result !== 'number') throw new DbForwardingError('DB_QUERY_FAILED', 'the front answered rows to a statement');
    return result;
  }

  async executeScript(): Promise<void> {
    throw new DbForwardingError('DB_UNSUPPORTED', 'scripts are not available in worker threads: ctx.db runs single statements');
  }

  async startTransaction(): Promise<Transaction> {
    throw new DbForwardingError('DB_UNSUPPORTED', 'ctx.db offers no transactions: worker threads cannot open one');
  }

  async dispose(): Promise<void> {}
}

export function forwardingAdapterFactory(provider: Provider, channel: DbChannel): SqlDriverAdapterFactory {
  return {
    provider,
    adapterName: FORWARDING_ADAPTER_NAME,
    connect: async () => new ForwardingAdapter(provider, channel),
  };
}

/**
 * The worker's Prisma client: one per worker, created once (at its first ctx.db query, or at warm-up if eager), never per run. Prisma refuses an
 * adapter whose provider is not its generated client's, so the client is the database's own, loaded by
 * provider (only the one in use is loaded: each costs ~40 ms and a few MiB per worker). Both are generated
 * from the same models and share the `Db` type.
 *
 * Its query compiler is the cell's (prisma/query-compiler.ts), given at start or asked for when Prisma loads it
 * (the first query), and only instantiated here; with no run attached or no answer, Prisma compiles its own.
 */
export function createWorkerPrismaClient(provider: DbProvider, channel: DbChannel): Db {
  const { PrismaClient } = (
    provider === 'postgres' ? require('../../prisma/generated/postgresql/client.js') : require('../../prisma/generated/sqlite/client.js')
  ) as typeof import('../../prisma/generated/sqlite/client.js');
  const options = { adapter: forwardingAdapterFactory(provider, channel), ...queryCompilerFrom(() => channel.queryCompiler()) };
  return new PrismaClient(options as ConstructorParameters<typeof PrismaClient>[0]);
}
