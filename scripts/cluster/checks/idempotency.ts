/**
 * correlation_id idempotency, cluster-wide: every acknowledgement of one user's correlation id names the same
 * run, whichever node answered, and the database holds at most one run per (user, correlation id).
 */
import type { History } from '../history.js';
import type { Violation } from './violation.js';

export function checkIdempotency(h: History): Violation[] {
  const out: Violation[] = [];
  const answered = new Map<string, Map<string, string[]>>();
  for (const r of h.requests) {
    if (r.correlationId === null || r.outcome.kind !== 'accepted') continue;
    const key = `${r.userId}\u0000${r.correlationId}`;
    const runs = answered.get(key) ?? new Map<string, string[]>();
    runs.set(r.outcome.runId, [...(runs.get(r.outcome.runId) ?? []), `${r.via} on ${r.node}`]);
    answered.set(key, runs);
  }
  for (const [key, runs] of answered) {
    if (runs.size < 2) continue;
    const [userId, correlationId] = key.split('\u0000');
    const ids = [...runs.keys()];
    out.push({
      kind: 'idempotency',
      runId: ids[0],
      otherRunIds: ids.slice(1),
      message: `user ${userId}, correlation_id ${correlationId}: acknowledged as ${[...runs].map(([id, via]) => `${id} (${via.join(', ')})`).join(' and ')}`,
    });
  }
  const rows = new Map<string, string[]>();
  for (const row of h.runs) {
    if (row.correlationId === null) continue;
    const key = `${row.userId}\u0000${row.correlationId}`;
    rows.set(key, [...(rows.get(key) ?? []), row.id]);
  }
  for (const [key, ids] of rows) {
    if (ids.length < 2) continue;
    const [userId, correlationId] = key.split('\u0000');
    out.push({ kind: 'idempotency', runId: ids[0], otherRunIds: ids.slice(1), message: `user ${userId}, correlation_id ${correlationId}: ${ids.length} rows (${ids.join(', ')})` });
  }
  return out;
}
