/**
 * Each run's scratch folder (ctx.scratchDir): made by the front just before the run is sent to its cell,
 * under a random name, and removed when the run ends. The cell's own folder is root's and may only be passed
 * through when cells have OS users of their own, so a run can neither list it, nor leave anything in it, nor
 * find another run's folder. Without separate users a cell could write beside its runs' folders: whatever is
 * there is moved aside when a run ends and again just before a run's folder is made, since a run's code can still
 * write after its end (a late callback that is no handle: Atomics.waitAsync's timer, a finalizer, a WebAssembly
 * compile). What it writes while another run executes is as visible to that run as a run beside it (README,
 * conventions).
 *
 * Nothing here removes a tree on the front's event loop, nor throws into the caller: leftovers are renamed into the
 * cell's trash (a sibling of its folder, outside what the cell may touch: one rename whatever their depth) and
 * removed there in the background (remove-tree.ts). A run that left a read-only folder had the front's
 * synchronous removal throw EACCES into the dispatch and the front exit; one that left 3,812 nested folders held the
 * front's event loop 7.9 s while they were removed (helper-63).
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { retire } from './remove-tree.js';

/** Leftovers moved aside before a run's folder is made, at most: past it the rest go a moment later (README). */
export const SWEEP_NOW_MAX = 1000;

export interface RunScratch {
  /** The cell's folder, where its runs' folders are made. */
  readonly dir: string;
  /** Makes the run's folder and returns its path. */
  open(runId: string): string;
  /** Removes the run's folder (and, without separate users, anything else no running run owns). */
  close(runId: string): void;
  /** The cell is gone: its folder and its trash are removed in the background, whatever its runs left. */
  removeAll(): void;
}

export function createRunScratch(cellDir: string, owner: { uid: number; gid: number } | null): RunScratch {
  const folders = new Map<string, string>();
  const trash = `${cellDir}.trash`;
  let moved = 0;
  let emptying = false;
  let emptyAgain = false;
  const live = () => new Set([...folders.values()].map((f) => path.basename(f)));

  /**
   * One rename, whatever is inside; false if it could not be moved (gone already, or the cell's folder is). A folder
   * the run made read-only cannot move to another parent: it is made writable first, through a descriptor opened
   * without following links (a name swapped for a link meanwhile is not followed).
   */
  function moveAside(name: string): boolean {
    const from = path.join(cellDir, name);
    try {
      fs.mkdirSync(trash, { recursive: true, mode: 0o700 });
    } catch {
      return false;
    }
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        fs.renameSync(from, path.join(trash, `${moved++}`));
        return true;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (attempt > 0 || (code !== 'EACCES' && code !== 'EPERM')) return false;
        if (!makeDirWritable(from)) return false;
      }
    }
    return false;
  }

  /**
   * Removes what is in the trash, in the background: the trash is retired (renamed, so what arrives meanwhile starts
   * a new trash) and removed whole; one at a time, again if more arrived meanwhile. Called after every attempt to
   * move something aside, moved or not: the attempt may have made the trash.
   */
  function emptyTrash(): void {
    if (emptying) {
      emptyAgain = true;
      return;
    }
    emptying = true;
    void (async () => {
      do {
        emptyAgain = false;
        await retire(trash);
      } while (emptyAgain);
      emptying = false;
    })();
  }

  /** Leftovers beside the running runs' folders: up to `max` now, the rest in the background. */
  function sweep(max: number): void {
    const running = live();
    let dir: fs.Dir;
    try {
      dir = fs.opendirSync(cellDir);
    } catch {
      return;
    }
    let now = 0;
    let rest = false;
    try {
      for (let entry = dir.readSync(); entry; entry = dir.readSync()) {
        if (running.has(entry.name)) continue;
        if (now >= max) {
          rest = true;
          break;
        }
        moveAside(entry.name);
        now++;
      }
    } catch {
      // The cell's folder went away under us: its cell died.
    } finally {
      dir.closeSync();
    }
    if (now > 0) emptyTrash();
    if (rest) setImmediate(() => sweep(max));
  }

  return {
    dir: cellDir,
    open(runId) {
      if (!owner) sweep(SWEEP_NOW_MAX);
      // randomUUID draws from a buffered pool (122 random bits): one OpenSSL call per 128 names, not one per name.
      const dir = path.join(cellDir, randomUUID());
      try {
        fs.mkdirSync(dir, { mode: 0o700 });
        if (owner) fs.chownSync(dir, owner.uid, owner.gid);
      } catch {
        // The cell's folder is gone: the cell died a moment ago, and its runs will be settled or sent elsewhere.
      }
      folders.set(runId, dir);
      return dir;
    },
    close(runId) {
      const dir = folders.get(runId);
      if (!dir) return;
      folders.delete(runId);
      // Most runs leave their folder empty: one rmdir. Anything else (a non-empty folder, a file in its place)
      // is moved aside and removed in the background.
      fs.rmdir(dir, (err) => {
        if (!err || err.code === 'ENOENT') return;
        moveAside(path.basename(dir));
        emptyTrash();
      });
      if (!owner) setImmediate(() => sweep(SWEEP_NOW_MAX));
    },
    removeAll() {
      folders.clear();
      void retire(cellDir);
      void retire(trash);
    },
  };
}

function makeDirWritable(dir: string): boolean {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
    fs.fchmodSync(fd, 0o700);
    return true;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
