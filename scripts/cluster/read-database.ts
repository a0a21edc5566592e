/**
 * Reads the end state straight from PostgreSQL with pg (not through a node: the checker trusts no node's view):
 * every run row and every logged event. Times are read as epoch ms (the columns hold UTC without a zone).
 */
import pg from 'pg';
import type { LoggedEvent, RunRow } from './history.js';

const epochMs = (column: string) => `(EXTRACT(EPOCH FROM "${column}") * 1000)::float8`;

function parseJson(text: unknown): unknown {
  if (typeof text !== 'string') return text;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export async function readDatabase(databaseUrl: string): Promise<{ runs: RunRow[]; events: LoggedEvent[] }> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const runs = await client.query(
      `SELECT r.*, ${epochMs('queuedAt')} AS queued_ms, ${epochMs('startedAt')} AS started_ms, ${epochMs('finishedAt')} AS finished_ms
         FROM "Run" r ORDER BY "queuedAt", id`,
    );
    const events = await client.query(`SELECT "runId", seq, type, id, payload, ${epochMs('timestamp')} AS ts_ms FROM "RunEvent" ORDER BY "runId", seq`);
    return {
      runs: runs.rows.map((r) => {
        const { input: _input, result: _result, report: _report, queued_ms, started_ms, finished_ms, ...raw } = r;
        return {
          id: r.id,
          userId: r.userId,
          threadId: r.threadId,
          agentName: r.agentName,
          status: r.status,
          errorCode: r.errorCode ?? null,
          attempts: Number(r.attempts),
          correlationId: r.correlationId ?? null,
          queuedAtMs: queued_ms,
          startedAtMs: started_ms,
          finishedAtMs: finished_ms,
          raw,
        };
      }),
      events: events.rows.map((e) => ({ runId: e.runId, seq: e.seq, type: e.type, eventId: e.id, payload: parseJson(e.payload), timestampMs: e.ts_ms })),
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Runs not finished yet (queued or running), for the wait before the check. */
export async function unfinishedRuns(databaseUrl: string): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const { rows } = await client.query(`SELECT count(*)::int AS n FROM "Run" WHERE status NOT IN ('completed', 'failed', 'cancelled', 'timeout')`);
    return rows[0].n;
  } finally {
    await client.end().catch(() => undefined);
  }
}
