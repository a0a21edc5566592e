/**
 * The node lock on SQLite (../node-lock.ts): a file beside the database naming the process that holds it. A
 * SQLite file is one machine's, so a holder that is not a live process of this host is gone (a crash, a
 * container restarted with the same pid): its lock is taken over.
 */
import fs from 'node:fs';
import os from 'node:os';
import type { SqliteTarget } from '../database-target.js';
import { lockRefusal } from '../node-lock.js';
import { processAlive } from '../../process-alive.js';

export function lockSqlite(target: SqliteTarget): () => Promise<void> {
  const file = `${target.file}.node-lock`;
  const mine = JSON.stringify({ pid: process.pid, host: os.hostname() });
  try {
    fs.writeFileSync(file, mine, { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    let holder: { pid?: unknown; host?: unknown } = {};
    try {
      holder = JSON.parse(fs.readFileSync(file, 'utf8')) as typeof holder;
    } catch {
      // Unreadable or half-written: nobody can be said to hold it.
    }
    if (typeof holder.pid === 'number' && holder.host === os.hostname() && holder.pid !== process.pid && processAlive(holder.pid)) {
      throw lockRefusal('single', `${target.file} (process ${holder.pid} holds ${file})`);
    }
    fs.writeFileSync(file, mine, { mode: 0o600 });
  }
  return async () => {
    try {
      if (fs.readFileSync(file, 'utf8') === mine) fs.unlinkSync(file);
    } catch {
      // Already gone.
    }
  };
}
