/** The RunWrites (../run-writes.ts) on PostgreSQL: each write is an item of the next group commit. */
import type pg from 'pg';
import type { Logger } from '../../logger.js';
import type { RunWrites } from '../run-writes.js';
import type { Backends } from './backends.js';
import { createPgGroupCommit, type PgGroupCommit } from './group-commit.js';
import { explain, isRequest, isWriteError, runStatements, undoStatements, utc, type RunWrite } from './run-statements.js';

export interface PgRunWrites extends RunWrites {
  readonly commits: PgGroupCommit<RunWrite>;
}

/** `backends`: how connections given up on are ended (backends.ts; a test can stall it). */
export function createPgRunWrites(pool: pg.Pool, log: Pick<Logger, 'info' | 'warn'>, backends?: Backends): PgRunWrites {
  const commits = createPgGroupCommit<RunWrite>(pool, { statements: runStatements, undo: undoStatements, isRequest, isWriteError, explain }, log, backends);
  return {
    commits,
    createThread: (userId, id, title, at) => commits.run({ kind: 'thread', userId, id, title, at: utc(at) }),
    acceptRun: (row) => commits.run({ kind: 'accept', row }),
    markRunning: (runId, cellId, workerId, startedAt, attempts, owner = null) => commits.run({ kind: 'running', runId, cellId, workerId, startedAt: utc(startedAt), attempts, owner }),
    markRequeued: (runId, owner = null) => commits.run({ kind: 'requeued', runId, owner }),
    appendEvents: (events, owner = null) => commits.run({ kind: 'events', events, owner }),
    finishRun: (row, owner = null) => commits.run({ kind: 'finish', row, owner }),
  };
}
