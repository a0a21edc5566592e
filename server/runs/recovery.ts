/**
 * Start-up: runs a dead process left behind. Those it left running are finished as failed (WORKER_CRASHED)
 * with their terminal event; those it had accepted and not started are queued again. Their event logs
 * continue after the last event they logged. It settles once the failed runs' terminal events are written, so
 * the server that starts listening after it never shows such a run as still running.
 */
import type { RunStore } from '../store/store.js';
import type { EventRelay } from './event-relay.js';
import type { Finishing } from './finishing.js';
import { liveRunOf } from './live-run.js';
import type { LiveRuns } from './live-runs.js';
import type { Scheduler } from './scheduler.js';

export async function recoverRuns(deps: {
  store: RunStore;
  relay: EventRelay;
  live: LiveRuns;
  scheduler: Scheduler;
  finishing: Finishing;
}): Promise<{ failed: number; requeued: number }> {
  let failed = 0;
  let requeued = 0;
  const written: Promise<void>[] = [];
  for (const { run: r, lastSeq } of await deps.store.findUnfinishedRuns()) {
    const run = liveRunOf(r);
    deps.relay.open(run, lastSeq + 1);
    deps.live.add(run);
    if (r.status === 'running') {
      run.phase = 'running';
      run.startedAt = r.startedAt?.getTime() ?? null;
      deps.finishing.finish(run, 'failed', { code: 'WORKER_CRASHED', message: 'the server stopped while this run was running' }, null, 0);
      written.push(deps.relay.written(run));
      failed++;
    } else {
      deps.scheduler.enqueue(run);
      requeued++;
    }
  }
  await Promise.all(written);
  return { failed, requeued };
}
