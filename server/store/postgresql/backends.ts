/**
 * The server process behind a connection, and ending it. A connection given up on (its answer lost: a reset, pg's
 * query_timeout) can still have a backend on the server executing what it was sent, COMMIT included: a partition
 * that heals, a COMMIT held up by a stalled disk or a synchronous standby. Whatever decides from what it sees
 * whether that work committed (the undo of a refused request, the look-up of an accept whose answer was lost)
 * first ends that backend and waits for it to exit (`pg_terminate_backend(pid, timeout)`, PostgreSQL 14+): its
 * transaction has then committed or rolled back for good. The backend's start time keeps a pid that a newer
 * backend reused from being ended in its place.
 */
import type pg from 'pg';

export interface Backend {
  pid: number;
  /** pg_stat_activity.backend_start in microseconds since the epoch (exact, whatever the session's DateStyle). */
  start: string;
}

/** What ending a backend found: gone (or ended now), still running after the wait, or not ours to end. */
export type Ending = 'ended' | 'alive' | 'not-allowed';

/** How long the server waits for an ended backend to exit. */
const EXIT_WAIT_MS = 5_000;
/**
 * SQLSTATEs that say the backend cannot be ended from here: insufficient_privilege (another role's backend, the
 * pool's role not a member of pg_signal_backend), undefined_function (PostgreSQL before 14, no timeout argument).
 */
const NOT_ALLOWED = new Set(['42501', '42883']);
/** query_canceled: a statement_timeout shorter than the wait; the backend may still be running. */
const CANCELED = '57014';

const START = '(extract(epoch FROM backend_start) * 1000000)::int8';
const IDENTIFY = { name: 'atoll_backend', text: `SELECT pid, ${START}::text AS start FROM pg_stat_activity WHERE pid = pg_backend_pid()` };
const STILL_THERE = `SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND ${START} = $2::int8`;
/**
 * Another role's backend shows its pid but not its start time (without pg_read_all_stats): it is not ended then,
 * since whether it is still the same backend cannot be told.
 */
const END = `SELECT backend_start IS NULL AS hidden, CASE WHEN backend_start IS NOT NULL THEN pg_terminate_backend(pid, $3) END AS ended
  FROM pg_stat_activity WHERE pid = $1 AND (${START} = $2::int8 OR backend_start IS NULL)`;

export interface Backends {
  /** The backend of this connection, asked once per connection (one round trip on its first use). */
  of(client: pg.ClientBase): Promise<Backend>;
  /** Ends a backend of a connection given up on and waits for it to exit; on a connection of `pool`. */
  end(pool: pg.Pool, backend: Backend): Promise<Ending>;
}

export function createBackends(): Backends {
  // Per connection, forgotten with it.
  const known = new WeakMap<pg.ClientBase, Backend>();
  return {
    async of(client) {
      const cached = known.get(client);
      if (cached) return cached;
      const { rows } = await client.query<Backend>(IDENTIFY);
      const backend = rows[0];
      if (!backend) throw new Error('this connection has no row in pg_stat_activity: its backend cannot be known');
      known.set(client, backend);
      return backend;
    },
    async end(pool, backend) {
      try {
        const { rows } = await pool.query<{ hidden: boolean; ended: boolean | null }>(END, [backend.pid, backend.start, EXIT_WAIT_MS]);
        // No row: that backend is gone already (a newer one with its pid is not it).
        if (rows.length === 0) return 'ended';
        if (rows[0]!.hidden) return 'not-allowed';
        if (rows[0]!.ended) return 'ended';
        // false also when it exited on its own between the look and the signal: look again.
        const again = await pool.query(STILL_THERE, [backend.pid, backend.start]);
        return again.rows.length === 0 ? 'ended' : 'alive';
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (typeof code === 'string' && NOT_ALLOWED.has(code)) return 'not-allowed';
        if (code === CANCELED) return 'alive';
        throw err;
      }
    },
  };
}
