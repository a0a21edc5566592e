/** Which serving cell takes a run: supervisor.pick. */
import type { CellHandle } from './cell-handle.js';

type Candidate = Pick<CellHandle, 'quarantine' | 'freeSlots' | 'userWorkers'>;

/**
 * The serving cell with a free slot for a run of `userId`, or null when all are full: first a cell where one of
 * the user's workers is idle (the run starts at once), then one that served the user lately (its workers are
 * busy, but it may hold more than the front saw), then any; among equals, the most free slots, then the first.
 */
export function pickCell<C extends Candidate>(cells: readonly (C | null)[], userId?: string): C | null {
  let best: C | null = null;
  let bestRank = -1;
  for (const cell of cells) {
    if (!cell || cell.quarantine || cell.freeSlots <= 0) continue;
    const rank = userId === undefined ? 0 : cell.userWorkers.idleFor(userId) > 0 ? 2 : cell.userWorkers.serves(userId) ? 1 : 0;
    if (!best || rank > bestRank || (rank === bestRank && cell.freeSlots > best.freeSlots)) {
      best = cell;
      bestRank = rank;
    }
  }
  return best;
}
