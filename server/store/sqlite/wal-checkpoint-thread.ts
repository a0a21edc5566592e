/**
 * The WAL checkpointer's thread (wal-checkpointer.ts), with a connection of its own. Asked after the writer's
 * commits, it copies the WAL into the database file with a PASSIVE checkpoint: it neither waits for the writer
 * nor holds it up, so the copy and its fsyncs happen here instead of on the front's event loop.
 *
 * A PASSIVE checkpoint alone never lets the WAL start over under steady writes: the writer reuses the file from
 * its beginning only when it finds every frame copied, and by then it has always committed again. So once the
 * file is past `restartBytes`, a RESTART follows: it copies what the PASSIVE one could not (a commit or two) while
 * the writer waits, and the writer's next commit starts the file over. The writer waits a few milliseconds once
 * every `restartBytes` of WAL instead of for every checkpoint.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

export type CheckpointRequest = 'checkpoint' | 'stop';
/** walBytes: what the WAL held (its frames) when the thread looked. */
export type CheckpointReply = { ok: true; restarted: boolean; walBytes: number } | { ok: false; error: string };

const { file, busyTimeoutMs, restartBytes } = workerData as { file: string; busyTimeoutMs: number; restartBytes: number };
const db = new Database(file, { timeout: busyTimeoutMs });
// This connection never writes; set anyway, so that nothing it does checkpoints on SQLite's own schedule.
db.pragma('wal_autocheckpoint = 0');
// A checkpoint copies frames through the file, not the page cache: 64 pages instead of SQLite's default 2 MiB.
db.pragma('cache_size = 64');
// A frame is a page and its 24-byte header. The file's size says nothing: a restarted WAL is written over from
// its beginning, not truncated.
const frameBytes = (db.pragma('page_size', { simple: true }) as number) + 24;

parentPort!.on('message', (request: CheckpointRequest) => {
  if (request === 'stop') {
    db.close();
    parentPort!.close();
    return;
  }
  let reply: CheckpointReply;
  try {
    const [row] = db.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number; log: number; checkpointed: number }>;
    const size = row.log * frameBytes;
    const restarted = size > restartBytes;
    if (restarted) db.pragma('wal_checkpoint(RESTART)');
    reply = { ok: true, restarted, walBytes: size };
  } catch (err) {
    reply = { ok: false, error: String((err as Error)?.message ?? err) };
  }
  parentPort!.postMessage(reply);
});
