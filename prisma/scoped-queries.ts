/**
 * The only database queries agent code can have executed: the three shapes behind ctx.db. Both sides
 * import this file. Worker threads run them (workers/worker/scoped-db.ts) on their own Prisma client, whose
 * adapter forwards each statement to the front; the front runs them once at start-up against a recording
 * adapter (server/store/worker-query-gate.ts) to learn the statements they compile to, and executes nothing
 * else for a thread. A new ctx.db query is a new function here, and nothing more.
 */
import type { Db } from './client-type.js';

/** The most rows one ctx.db call returns (its `limit` is clamped to it; the front's gate refuses more). */
export const MAX_ROWS = 100;

export interface ThreadRow {
  id: string;
  title: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface MessageRow {
  id: number;
  role: string;
  content: string;
  status: string;
  createdAt: Date;
}

/** One thread of the user's, or null (another user's thread answers exactly like an unknown one). */
export function threadsGet(prisma: Db, userId: string, threadId: string): Promise<ThreadRow | null> {
  return prisma.thread.findFirst({ where: { id: threadId, userId } });
}

/** The user's threads, most recently updated first. */
export function threadsList(prisma: Db, userId: string, options: { limit: number }): Promise<ThreadRow[]> {
  return prisma.thread.findMany({ where: { userId }, orderBy: { updatedAt: 'desc' }, take: options.limit });
}

/** A thread's messages after `afterId`, oldest first; [] when the thread is not the user's. */
export function messagesList(prisma: Db, userId: string, options: { threadId: string; afterId: number; limit: number }): Promise<MessageRow[]> {
  // The join on the thread's owner is what keeps another user's history out of reach.
  return prisma.message.findMany({
    where: { threadId: options.threadId, thread: { userId }, id: { gt: options.afterId } },
    orderBy: { id: 'asc' },
    take: options.limit,
  });
}

/**
 * Every shape, called once each with `userId` (and stand-in ids): what the front's gate learns from.
 * Each call must compile to statements that hold `userId` as an argument.
 */
export async function exerciseScopedQueries(prisma: Db, userId: string, stand: Stand): Promise<void> {
  await threadsGet(prisma, userId, stand.threadId);
  await threadsList(prisma, userId, { limit: 20 });
  await messagesList(prisma, userId, { threadId: stand.threadId, afterId: stand.afterId, limit: stand.limit });
}

/** Stand-in values the gate finds again among a statement's arguments: where a page of messages names its thread, cursor and size. */
export interface Stand {
  threadId: string;
  afterId: number;
  limit: number;
}
