/**
 * Each run's scratch folder (ctx.scratchDir): made by the front just before the run is sent to its cell,
 * under a random name, and removed when the run ends. The cell's own folder is root's and may only be passed
 * through when cells have OS users of their own, so a run can neither list it, nor leave anything in it, nor
 * find another run's folder. Without separate users a cell could write beside its runs' folders: whatever is
 * there is swept when a run ends and again just before a run's folder is made, since a run's code can still write
 * after its end (a late callback that is no handle: Atomics.waitAsync's timer, a finalizer, a WebAssembly compile).
 * What it writes while another run executes is as visible to that run as a run beside it (README, conventions).
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export interface RunScratch {
  /** Makes the run's folder and returns its path. */
  open(runId: string): string;
  /** Removes the run's folder (and, without separate users, anything else no running run owns). */
  close(runId: string): void;
}

export function createRunScratch(cellDir: string, owner: { uid: number; gid: number } | null): RunScratch {
  const folders = new Map<string, string>();
  const live = () => new Set([...folders.values()].map((f) => path.basename(f)));
  const sweep = () =>
    fs.readdir(cellDir, (err, names) => {
      if (err) return;
      const running = live();
      for (const name of names) if (!running.has(name)) fs.rm(path.join(cellDir, name), { recursive: true, force: true }, () => undefined);
    });
  /** Before a run's folder is made: done by the time its run starts (a readdir of a handful of names). */
  const sweepNow = () => {
    let names: string[];
    try {
      names = fs.readdirSync(cellDir);
    } catch {
      return;
    }
    const running = live();
    for (const name of names) if (!running.has(name)) fs.rmSync(path.join(cellDir, name), { recursive: true, force: true });
  };
  return {
    open(runId) {
      if (!owner) sweepNow();
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
      // Most runs leave their folder empty: one rmdir, not fs.rm's lstat, lstat and rmdir. Anything else
      // (a non-empty folder, a file in its place) goes the long way.
      fs.rmdir(dir, (err) => {
        if (err && err.code !== 'ENOENT') fs.rm(dir, { recursive: true, force: true }, () => undefined);
      });
      if (!owner) sweep();
    },
  };
}
