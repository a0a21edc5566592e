/** The front's accepted runs, by id, from acceptance (or recovery) until their terminal event is delivered. */
import type { LiveRun } from './live-run.js';

export function createLiveRuns() {
  const runs = new Map<string, LiveRun>();
  return {
    add(run: LiveRun): void {
      runs.set(run.id, run);
    },
    get(runId: string): LiveRun | undefined {
      return runs.get(runId);
    },
    delete(runId: string): void {
      runs.delete(runId);
    },
    values(): IterableIterator<LiveRun> {
      return runs.values();
    },
    /** Runs dispatched to a cell or running there. */
    inFlight(): LiveRun[] {
      return [...runs.values()].filter((r) => r.phase === 'dispatched' || r.phase === 'running');
    },
    /** Unfinished runs of one conversation (double-texting). */
    unfinishedIn(threadId: string): LiveRun[] {
      return [...runs.values()].filter((r) => r.threadId === threadId && r.phase !== 'finished');
    },
  };
}

export type LiveRuns = ReturnType<typeof createLiveRuns>;
