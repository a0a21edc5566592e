/** Turns how a cell process ended (code, signal, last stderr) into a cause and a code for its runs. */
import { CELL_EXIT_DESCRIPTORS, CELL_EXIT_MEMORY, CELL_EXIT_SCRATCH } from '../../protocol/cell-messages.js';
import type { ErrorBody } from '../../protocol/errors.js';

export const CELL_DEATH_CAUSES = ['out_of_memory', 'memory_limit', 'scratch_limit', 'descriptors', 'fatal_error', 'killed', 'exited'] as const;
export type CellDeathCause = (typeof CELL_DEATH_CAUSES)[number];

/** The front killed the cell for holding `held` descriptors, past its ceiling (descriptor-ceiling.ts). */
export interface DescriptorKill {
  held: number;
  ceiling: number;
}

export interface CellExit {
  cause: CellDeathCause;
  error: ErrorBody;
}

const OOM_MARKERS = ['heap out of memory', 'invalid size error', 'Allocation failed', 'out of memory'];

export function describeCellExit(code: number | null, signal: NodeJS.Signals | null, stderrTail: string, killedForDescriptors: DescriptorKill | null = null): CellExit {
  const how = signal ? `signal ${signal}` : `exit code ${code}`;
  if (killedForDescriptors) {
    const { held, ceiling } = killedForDescriptors;
    return { cause: 'descriptors', error: { code: 'LIMIT_EXCEEDED', message: `the run's cell held ${held} file descriptors, more than CELL_MAX_DESCRIPTORS (${ceiling}), so the front stopped it` } };
  }
  if (code === CELL_EXIT_MEMORY) {
    return { cause: 'memory_limit', error: { code: 'OUT_OF_MEMORY', message: 'the run exceeded its cell\'s memory limit (CELL_MEMORY_MB), counting off-heap buffers' } };
  }
  if (code === CELL_EXIT_SCRATCH) {
    return { cause: 'scratch_limit', error: { code: 'LIMIT_EXCEEDED', message: "the run wrote more than a run's scratch budget (RUN_SCRATCH_MB, RUN_SCRATCH_FILES) beside its scratch folder, in its cell's" } };
  }
  if (code === CELL_EXIT_DESCRIPTORS) {
    return { cause: 'descriptors', error: { code: 'LIMIT_EXCEEDED', message: "the run's cell had no file descriptor left for seconds (a run held them, or the host ran out), so it could not watch its runs' scratch folders" } };
  }
  // V8's fatal messages are plain text; a JSON line is the cell's own log or what its workers printed (agent code
  // could print a marker, then end its cell), so only the plain lines are read.
  const plain = stderrTail.split('\n').filter((line) => !line.startsWith('{'));
  if (plain.some((line) => OOM_MARKERS.some((m) => line.includes(m)))) {
    return { cause: 'out_of_memory', error: { code: 'OUT_OF_MEMORY', message: `the run's cell ran out of memory (V8 fatal error, ${how})` } };
  }
  if (signal === 'SIGABRT' || code === 134 || code === 133) {
    return { cause: 'fatal_error', error: { code: 'WORKER_CRASHED', message: `the run's cell aborted (${how})` } };
  }
  if (signal) return { cause: 'killed', error: { code: 'WORKER_CRASHED', message: `the run's cell was killed (${how})` } };
  return { cause: 'exited', error: { code: 'WORKER_CRASHED', message: `the run's cell exited (${how})` } };
}
