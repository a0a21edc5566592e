/**
 * When runs came to be, on the checker's clock: the earliest acknowledgement naming a run (its row was
 * committed by then), and the earliest send of any request that may have created it (the ones answered with
 * it, and every request carrying its correlation id, answered or not). A run neither can place (created by a
 * request that got no answer and had no correlation id) is absent from both maps.
 */
import type { History, StartRequest } from '../history.js';

export interface Placement {
  ackedAt: Map<string, number>;
  createdNotBefore: Map<string, number>;
}

export function placeRuns(h: History): Placement {
  const ackedAt = new Map<string, number>();
  const sent = new Map<string, number>();
  const earliest = (map: Map<string, number>, key: string, at: number) => {
    const prev = map.get(key);
    if (prev === undefined || at < prev) map.set(key, at);
  };
  const byCorrelation = new Map<string, number>();
  for (const r of h.requests) if (r.correlationId !== null) earliest(byCorrelation, correlationKey(r), r.sentAt);
  for (const r of h.requests) {
    if (r.outcome.kind !== 'accepted') continue;
    earliest(sent, r.outcome.runId, r.sentAt);
    if (r.answeredAt !== null) earliest(ackedAt, r.outcome.runId, r.answeredAt);
  }
  const createdNotBefore = new Map<string, number>();
  for (const row of h.runs) {
    const viaAnswer = sent.get(row.id);
    const viaCorrelation = row.correlationId === null ? undefined : byCorrelation.get(`${row.userId}\u0000${row.correlationId}`);
    const candidates = [viaAnswer, viaCorrelation].filter((x): x is number => x !== undefined);
    if (candidates.length > 0) createdNotBefore.set(row.id, Math.min(...candidates));
  }
  return { ackedAt, createdNotBefore };
}

function correlationKey(r: StartRequest): string {
  return `${r.userId}\u0000${r.correlationId}`;
}
