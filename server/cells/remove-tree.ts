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
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

/** What is being removed is renamed to this first (a name never used twice), in the same folder. */
export const RETIRED = '.retired-';

/**
 * Sets `dir` aside under a name no one will use again (one rename) and removes it in the background; resolves once
 * removed, at once if `dir` is not there. A removal by the name a cell's folder had could outlive its front (the
 * tools are child processes) and remove the folder a later front's cell of that name had just been given.
 */
export function retire(dir: string): Promise<void> {
  const aside = path.join(path.dirname(dir), `${RETIRED}${randomUUID()}`);
  try {
    fs.renameSync(dir, aside);
  } catch {
    return Promise.resolve();
  }
  return removeTree(aside);
}

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
