/**
 * The WAL checkpointer's thread (wal-checkpointer.ts), with a connection of its own. Asked after the writer's
 * commits, it copies the WAL into the database file with a PASSIVE checkpoint: it neither waits for the writer
 * nor holds it up, so the copy and its fsyncs happen here instead of on the front's event loop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

export type CheckpointRequest = 'checkpoint' | 'stop';
/** walBytes: what the WAL held (its frames) when the thread looked; complete: every frame was copied. */
export type CheckpointReply = { ok: true; walBytes: number; complete: boolean } | { ok: false; error: string };

const { file, busyTimeoutMs } = workerData as { file: string; busyTimeoutMs: number };
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
    reply = { ok: true, walBytes: row.log * frameBytes, complete: row.busy === 0 && row.checkpointed === row.log };
  } catch (err) {
    reply = { ok: false, error: String((err as Error)?.message ?? err) };
  }
  parentPort!.postMessage(reply);
});
