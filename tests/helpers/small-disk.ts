/**
 * A file system of a few MiB of its own (a tmpfs) for tests of a full disk, and a file that fills it. Mounting
 * takes root and CAP_SYS_ADMIN (CI runs as root); `canMount` says whether this process may, so that a test can be
 * skipped where it cannot run rather than fail.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

function mayMount(): boolean {
  if (process.getuid?.() !== 0) return false;
  const probe = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-mount-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe], { stdio: 'ignore' });
    execFileSync('umount', [probe]);
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(probe, { recursive: true, force: true });
  }
}
export const canMount = mayMount();

export interface SmallDisk {
  dir: string;
  /** Unmounts (lazily: a process may still hold a file there) and removes the mount point. */
  remove(): void;
}

export function mountSmallDisk(prefix: string, sizeMb: number): SmallDisk {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMb}m,mode=0755`, 'tmpfs', dir]);
  return {
    dir,
    remove() {
      execFileSync('umount', ['-l', dir]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Writes `file` until the file system has no block left. */
export function fillDisk(file: string): void {
  const fd = fs.openSync(file, 'w');
  try {
    for (let size = 1 << 20; size >= 512; size >>= 1) {
      const block = Buffer.alloc(size, 1);
      try {
        for (;;) fs.writeSync(fd, block);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}
