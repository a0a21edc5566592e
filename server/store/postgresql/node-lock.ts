/**
 * The node lock on PostgreSQL (../node-lock.ts): a session advisory lock on a connection of its own, exclusive
 * for a single node, shared for nodes of a cluster, so either kind refuses to start beside the other. The server
 * releases it when the process dies, so a restart never waits. A lost connection loses the lock: it is taken
 * again on a new one, and if another node took the database meanwhile this node says so loudly.
 */
import pg from 'pg';
import type { StoreOptions } from '../backend.js';
import type { PostgresqlTarget } from '../database-target.js';
import { lockRefusal, type NodeMode } from '../node-lock.js';
import { isUnavailable } from './unavailable.js';

/** Beside Prisma's migration lock (72707369). */
const NODE_LOCK_KEY = 72707370;
const RELOCK_EVERY_MS = 5_000;

export async function lockPostgresql(target: PostgresqlTarget, mode: NodeMode, log: StoreOptions['log'], startupWaitMs: number): Promise<() => Promise<void>> {
  const fn = mode === 'single' ? 'pg_try_advisory_lock' : 'pg_try_advisory_lock_shared';
  let client: pg.Client | null = null;
  let closed = false;
  let timer: NodeJS.Timeout | null = null;

  async function take(): Promise<boolean> {
    const c = new pg.Client({ connectionString: target.url, connectionTimeoutMillis: 3_000, application_name: 'atoll-node-lock' });
    c.on('error', () => undefined);
    await c.connect();
    const { rows } = await c.query<{ ok: boolean }>(`SELECT ${fn}($1) AS "ok"`, [NODE_LOCK_KEY]);
    if (!rows[0]!.ok) {
      await c.end().catch(() => undefined);
      return false;
    }
    c.on('end', () => {
      if (closed) return;
      client = null;
      log.warn({ database: target.masked }, 'lost the connection holding the node lock; taking it again');
      schedule();
    });
    client = c;
    return true;
  }

  function schedule(): void {
    timer = setTimeout(() => {
      take().then(
        (ok) => (ok ? log.info({}, 'node lock taken again') : log.warn({ database: target.masked }, lockRefusal(mode, target.masked).message)),
        () => schedule(),
      );
    }, RELOCK_EVERY_MS);
    timer.unref();
  }

  // A connection that fails (a busy server, a restart) is tried again for DB_STARTUP_WAIT_MS, as migrations are.
  const deadline = Date.now() + startupWaitMs;
  for (;;) {
    try {
      if (await take()) break;
      throw lockRefusal(mode, `the database ${target.masked}`);
    } catch (err) {
      if (!isUnavailable(err) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  return async () => {
    closed = true;
    if (timer) clearTimeout(timer);
    await client?.end().catch(() => undefined);
  };
}
