/**
 * Removes a tree a run left, whatever it made of it, off the front's event loop and without throwing: folders it
 * made read-only, and trees deeper than PATH_MAX (a run can build one by renaming a deep chain into the tip of
 * another: every path it names stays short). fs.rm names each entry by its full path (ENAMETOOLONG there; fs.rmSync
 * recursed until the stack overflowed and threw out of a cell's launch: the front could not start again), so
 * folders go to coreutils' `chmod -R` and `rm -rf`, which walk by descriptor (helper-65).
 *
 * Only for trees no cell can reach any more (a cell's trash, a dead cell's folder, a gone front's root): nothing
 * changes them while they are walked, and neither tool follows a link met on the way.
 */
import { execFile } from 'node:child_process';
import fsp from 'node:fs/promises';

/** Resolves once `target` is removed, or removing it failed (logged by the caller's next look, never thrown). */
export async function removeTree(target: string): Promise<void> {
  const stat = await fsp.lstat(target).catch(() => null);
  if (!stat) return;
  if (!stat.isDirectory()) {
    await fsp.rm(target, { force: true }).catch(() => undefined);
    return;
  }
  await run('chmod', ['-R', 'u+rwx', '--', target]);
  await run('rm', ['-rf', '--', target]);
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve) => execFile(command, args, { timeout: 600_000 }, () => resolve()));
}
