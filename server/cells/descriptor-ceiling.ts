/**
 * The most descriptors a cell may hold (its /proc/<pid>/fd, read by the front: nameless-files.ts): its own, plus
 * RUN_OPEN_FILES and a few of Node's for each worker its pool may hold, twice over: Piscina starts a retired
 * worker's replacement while the retired thread is still ending with its descriptors (helper-75). The descriptor
 * wall counts the ordinary ways a run opens (workers/worker/fd-guards.ts), not all (Node's own helpers' internal
 * opens: README, threat model), so a cell far past what its workers may hold has a run opening another way.
 * Before this, such a run held descriptors until the cell's own limit (about 20,000 here), and its neighbours' opens
 * and the cell's own checks met EMFILE. Past the ceiling the front kills the cell (cause `descriptors`): its runs are
 * dealt with as after any cell death, and a run that does it again alone in quarantine is named.
 */
import { maxWorkersPerCell } from '../../protocol/cell-messages.js';

/** A cell's own descriptors (measured: 35 at rest with 2 workers, ~4 per worker; the model broker's sockets). */
export const CELL_OWN_DESCRIPTORS = 64;
/** Node's per worker thread (its event loop's epoll and eventfd, its message port's pipes: ~4), with room. */
export const WORKER_OWN_DESCRIPTORS = 16;

/** The ceiling for cells of this configuration (CELL_MAX_DESCRIPTORS's default); 0 when runs' open files are not bounded (RUN_OPEN_FILES=0). */
export function descriptorCeiling(config: { workersPerCell: number; warmSpareWorkers: number; runOpenFiles: number }): number {
  if (config.runOpenFiles <= 0) return 0;
  return CELL_OWN_DESCRIPTORS + 2 * maxWorkersPerCell(config) * (config.runOpenFiles + WORKER_OWN_DESCRIPTORS);
}
