/**
 * Start-up recovery (server/runs/recovery.ts) settles only once the terminal events of the runs it failed are
 * written: the server starts listening after it, and must never show such a run as still running.
 */
import { recoverRuns } from '../../server/runs/recovery';
import type { RunRecord } from '../../server/store/store';

const record = (id: string, status: 'running' | 'queued') =>
  ({ id, userId: 'u', threadId: 't', agentName: 'echo', input: {}, requestId: null, correlationId: null, queuedAt: new Date(0), startedAt: status === 'running' ? new Date(1) : null, attempts: 1, status }) as unknown as RunRecord;

test('recovery fails what was running, queues what waited, and settles only after the failures are written', async () => {
  let write!: () => void;
  const terminalWritten = new Promise<void>((resolve) => (write = resolve));
  const finished: string[] = [];
  const enqueued: string[] = [];
  const recovering = recoverRuns({
    store: { findUnfinishedRuns: async () => [{ run: record('r1', 'running'), lastSeq: 3 }, { run: record('r2', 'queued'), lastSeq: 1 }] },
    relay: { open: () => undefined, written: () => terminalWritten },
    live: { add: () => undefined },
    scheduler: { enqueue: (run: { id: string }) => void enqueued.push(run.id) },
    finishing: { finish: (run: { id: string }, status: string, error: { code: string }) => void finished.push(`${run.id} ${status} ${error.code}`) },
  } as never);
  let settled = false;
  void recovering.then(() => (settled = true));
  await new Promise((r) => setImmediate(r));
  expect({ finished, enqueued, settled }).toEqual({ finished: ['r1 failed WORKER_CRASHED'], enqueued: ['r2'], settled: false });
  write();
  await expect(recovering).resolves.toEqual({ failed: 1, requeued: 1 });
});
