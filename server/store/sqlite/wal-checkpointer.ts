/**
 * Checkpoints the front's SQLite WAL on a thread of its own. SQLite's automatic checkpoint runs inside the
 * commit that crosses its threshold (1000 pages), on the committing connection: on the front, that is the
 * event loop, which then copies the WAL's pages into the database file and waits for two fsyncs (each up to
 * 5–9 ms here, seen with strace; several checkpoints a second at ~150 runs/s). Everything else the front does waits with it: measured, time to
 * first event p99 at ~120 runs/s 19–24 ms with it, 15–19 ms with no checkpoint at all, and 31–48 ms with a
 * threshold five times larger (fewer, longer stalls).
 *
 * So the writer's connection turns automatic checkpoints off (`wal_autocheckpoint = 0`) and, after its commits,
 * asks this thread for a PASSIVE checkpoint (wal-checkpoint-thread.ts): at most one at a time and one per
 * `minIntervalMs`, none while nothing is written.
 *
 * That alone never lets the WAL start over under steady writes: the writer reuses the file from its beginning
 * only when it finds every frame copied, and by then it has always committed again. So once the thread finds the
 * WAL holding over `restartBytes`, the writer itself, right after its next commit, checkpoints the few frames
 * the thread has not copied yet (PASSIVE too: it waits for no one); its next commit then starts the WAL over.
 * The event loop pays for that small checkpoint once per `restartBytes` of WAL. (A RESTART checkpoint on the
 * thread instead made the writer sleep in SQLite's busy handler while it waited for readers: at full load
 * throughput fell by two thirds.) The WAL file stays near `restartBytes`. Durability is
 * unchanged: a commit is in the WAL (NORMAL: safe from a crash of this process; FULL: synced) whether or not it
 * was copied yet. If the thread fails, the writer's automatic checkpoint is turned back on, so the WAL cannot grow
 * without bound.
 */
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import type { CheckpointReply, CheckpointRequest } from './wal-checkpoint-thread.js';

/** SQLite's own default threshold, restored on the writer if the thread fails. */
const SQLITE_AUTOCHECKPOINT_PAGES = 1000;

export interface WalCheckpointer {
  /** The writer committed: a checkpoint follows (now, or once the one in progress and the interval are over). */
  committed(): void;
  /** The thread's checkpoints, the writer's own (restarts), the failed ones, and the most the WAL held. */
  readonly stats: { checkpoints: number; restarts: number; failures: number; maxWalBytes: number };
  /**
   * Stops the thread (it closes its connection); the writer's automatic checkpoint is back on. Resolves once the thread
   * is gone: one still starting opened the database after the front had closed, and made an empty file again where
   * the database had just been removed (tests/front-pipeline.test.ts, on a busy machine).
   */
  stop(): Promise<void>;
}

export function createWalCheckpointer(
  writer: Database.Database,
  file: string,
  opts: { busyTimeoutMs: number; minIntervalMs: number; restartBytes: number; onFailure?: (err: string) => void },
): WalCheckpointer {
  writer.pragma('wal_autocheckpoint = 0');
  const stats = { checkpoints: 0, restarts: 0, failures: 0, maxWalBytes: 0 };
  const worker = new Worker(path.join(__dirname, 'wal-checkpoint-thread.js'), {
    workerData: { file, busyTimeoutMs: opts.busyTimeoutMs },
    // It holds next to nothing: small heaps.
    resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 1 },
  });
  // The front's exit is never held up by it.
  worker.unref();
  let inFlight = false;
  let wanted = false;
  let lastStart = 0;
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  /** The thread found the WAL past restartBytes: the writer finishes the copy after its next commit. */
  let restartDue = false;

  const send = (request: CheckpointRequest) => worker.postMessage(request);

  function fallBack(err: string): void {
    if (stopped) return;
    stopped = true;
    if (timer) clearTimeout(timer);
    if (writer.open) writer.pragma(`wal_autocheckpoint = ${SQLITE_AUTOCHECKPOINT_PAGES}`);
    opts.onFailure?.(err);
  }

  function start(): void {
    timer = null;
    if (stopped || inFlight || !wanted) return;
    const wait = lastStart + opts.minIntervalMs - Date.now();
    if (wait > 0) {
      timer = setTimeout(start, wait);
      timer.unref();
      return;
    }
    wanted = false;
    inFlight = true;
    lastStart = Date.now();
    send('checkpoint');
  }

  worker.on('message', (reply: CheckpointReply) => {
    inFlight = false;
    if (reply.ok) {
      stats.checkpoints++;
      stats.maxWalBytes = Math.max(stats.maxWalBytes, reply.walBytes);
      // Only after a checkpoint that copied everything it saw: the writer's own is then a few frames, not a backlog
      // a reader held back.
      if (reply.walBytes > opts.restartBytes && reply.complete) restartDue = true;
    } else {
      // A busy database or a transient error: counted, and the next commit asks again.
      stats.failures++;
    }
    // With the writer's step due, the thread waits for it: were the thread always busy (slow fsyncs), the step
    // would never find it idle and the WAL would never start over.
    if (!restartDue) start();
  });
  worker.on('error', (err) => fallBack(String(err?.message ?? err)));
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  worker.on('exit', (code) => fallBack(`the checkpoint thread exited (${code})`));

  return {
    committed() {
      if (restartDue && !inFlight && !stopped) {
        restartDue = false;
        try {
          const [row] = writer.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number; log: number; checkpointed: number }>;
          // Not everything copied (a reader holds an older snapshot): the thread's next look decides again.
          if (row.busy === 0 && row.checkpointed === row.log) stats.restarts++;
        } catch {
          // The commit it follows stands; the thread's next look decides again.
          stats.failures++;
        }
        return;
      }
      wanted = true;
      if (!inFlight && !timer) start();
    },
    stats,
    stop() {
      if (!stopped) {
        stopped = true;
        if (timer) clearTimeout(timer);
        if (writer.open) writer.pragma(`wal_autocheckpoint = ${SQLITE_AUTOCHECKPOINT_PAGES}`);
        // Held until it has gone: unref'd, the front's event loop could empty while the thread closes, and the process
        // exit before the rest of the shutdown ran (its 'stopped' line, the last spans: CI, container-image and traces).
        worker.ref();
        send('stop');
        // A thread that does not end by itself is ended: a close never waits on it for long.
        const stuck = setTimeout(() => void worker.terminate(), 5000);
        stuck.unref();
        void exited.then(() => clearTimeout(stuck));
      }
      return exited;
    },
  };
}
