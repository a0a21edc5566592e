/**
 * ctx.db: the run's data handle, built on the worker's own Prisma client. Every query is pinned to
 * the run's user, so another user's thread id answers exactly like an unknown one. Dies with the run.
 * The queries themselves live in prisma/scoped-queries.ts: the front's gate executes nothing else.
 */
import type { Db } from '../../prisma/client-type.js';
import { MAX_ROWS, messagesList, threadsGet, threadsList } from '../../prisma/scoped-queries.js';
import type { MessageView, ScopedDb, ThreadView } from '../agent-contract.js';

export interface ReleasableDb {
  db: ScopedDb;
  release(): void;
}

/**
 * A thread id that names no thread on any database: ids never hold NUL, and PostgreSQL's text cannot even be
 * compared with one (the gate refuses it), so ctx.db answers such an id as unknown without asking.
 */
const namesNoThread = (id: string) => id.includes('\u0000');

const clampLimit = (limit: unknown, fallback: number) =>
  typeof limit === 'number' && Number.isInteger(limit) && limit > 0 ? Math.min(limit, MAX_ROWS) : fallback;

/** `prisma`: the worker's one client, created at the first call (loading it costs every idle worker ~2.4 MiB). */
export function createScopedDb(prisma: () => Db, userId: string, runThreadId: string, onQuery: () => void = () => undefined): ReleasableDb {
  let released = false;
  const guard = () => {
    if (released) throw new Error('ctx.db used after the run ended: the execution context is released');
    onQuery();
  };
  const threadView = (t: { id: string; title: string | null; createdAt: Date; updatedAt: Date }): ThreadView => ({
    id: t.id,
    title: t.title,
    createdAt: t.createdAt.toISOString(),
    updatedAt: t.updatedAt.toISOString(),
  });

  const db: ScopedDb = Object.freeze({
    // Prisma's interactive transaction is what agent authors reach for: refuse it by name, not "not a function".
    async $transaction(): Promise<never> {
      throw Object.assign(new Error("ctx.db offers no transactions: each ctx.db call is one statement, pinned to the run's user"), { code: 'DB_UNSUPPORTED' });
    },
    threads: Object.freeze({
      async get(threadId: string) {
        guard();
        if (typeof threadId !== 'string' || namesNoThread(threadId)) return null;
        const t = await threadsGet(prisma(), userId, threadId);
        return t ? threadView(t) : null;
      },
      async list(options: { limit?: number } = {}) {
        guard();
        const rows = await threadsList(prisma(), userId, { limit: clampLimit(options.limit, 20) });
        return rows.map(threadView);
      },
    }),
    messages: Object.freeze({
      async list(options: { threadId?: string; limit?: number; afterId?: number } = {}) {
        guard();
        const threadId = options.threadId ?? runThreadId;
        if (typeof threadId === 'string' && namesNoThread(threadId)) return [];
        const rows = await messagesList(prisma(), userId, { threadId, afterId: typeof options.afterId === 'number' ? options.afterId : 0, limit: clampLimit(options.limit, 50) });
        return rows.map(
          (m): MessageView => ({
            id: m.id,
            role: m.role as MessageView['role'],
            content: m.content,
            status: m.status as MessageView['status'],
            createdAt: m.createdAt.toISOString(),
          }),
        );
      },
    }),
  });
  return { db, release: () => void (released = true) };
}
