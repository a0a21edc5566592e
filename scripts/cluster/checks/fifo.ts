/**
 * Per-user FIFO of starts. Definition: for two runs X and Y of one user, if X was acknowledged (to any
 * request) before any request that could have created Y was sent, then X was accepted before Y, and X's first
 * claim (the first change after which it holds a slot, in the audit: audit.ts, history.ts holdsSlot) comes
 * before Y's first claim. Later claims of the same run (a re-run after its node or cell died) are not starts in
 * this sense and are not ordered. Runs that never started (stopped while queued) order nothing.
 *
 * "Acknowledged before sent" is judged on the checker's own clock, where both happen: the acknowledgement
 * proves X's row was committed, so X was waiting, visible to every node, before Y existed. Concurrent
 * requests are not ordered (either order is a correct FIFO), and runs the checker cannot place (placement.ts)
 * are left out. The claims' order is the audit's (see occupancy.ts for why it is a sound witness).
 */
import { holdsSlot, type History } from '../history.js';
import { placeRuns } from './placement.js';
import type { Violation } from './violation.js';

export function checkFifo(h: History): Violation[] {
  if (!h.transitions) return [];
  const firstClaim = new Map<string, number>();
  for (const t of [...h.transitions].sort((a, b) => a.id - b.id)) {
    if (holdsSlot(t) && !firstClaim.has(t.runId)) firstClaim.set(t.runId, t.id);
  }
  const { ackedAt, createdNotBefore } = placeRuns(h);
  const byUser = new Map<string, { runId: string; acked: number; created: number; claim: number }[]>();
  for (const row of h.runs) {
    const acked = ackedAt.get(row.id);
    const created = createdNotBefore.get(row.id);
    const claim = firstClaim.get(row.id);
    if (acked === undefined || created === undefined || claim === undefined) continue;
    byUser.set(row.userId, [...(byUser.get(row.userId) ?? []), { runId: row.id, acked, created, claim }]);
  }
  const out: Violation[] = [];
  for (const [userId, runs] of byUser) {
    for (const y of runs) {
      // The earliest-acknowledged run that Y overtook, if any: one finding per overtaking run.
      const overtaken = runs.filter((x) => x !== y && x.acked < y.created && y.claim < x.claim).sort((a, b) => a.acked - b.acked)[0];
      if (!overtaken) continue;
      out.push({
        kind: 'fifo',
        runId: y.runId,
        otherRunIds: [overtaken.runId],
        message: `user ${userId}: run ${y.runId} started (change #${y.claim}) before run ${overtaken.runId} (change #${overtaken.claim}), which was acknowledged ${y.created - overtaken.acked} ms before ${y.runId} was requested`,
      });
    }
  }
  return out;
}
