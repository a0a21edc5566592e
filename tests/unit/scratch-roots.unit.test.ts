/**
 * Scratch folders of fronts that are gone are removed at the next start (server/cells/cell-sandbox.ts): a killed
 * front cannot remove its own, and what its runs left there (agents' files) must not outlive it.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { clearScratchRoot, defaultScratchRoot, removeStaleScratchRoots } from '../../server/cells/cell-sandbox';

test("the scratch roots of dead fronts are removed with their runs' files; live fronts' and other folders stay", () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-test-'));
  try {
    // A pid that was just used and is gone (its process exited and was reaped).
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
    const deadRoot = defaultScratchRoot(tmp, Number(dead));
    fs.mkdirSync(path.join(deadRoot, 'cell1-g1', 'run-1'), { recursive: true });
    fs.writeFileSync(path.join(deadRoot, 'cell1-g1', 'run-1', 'notes.txt'), 'a user\'s data');
    // As a front running as root leaves a cell's folder (passable only, for the cell's own OS user).
    if (process.getuid?.() === 0) fs.chmodSync(path.join(deadRoot, 'cell1-g1'), 0o111);
    const kept = [defaultScratchRoot(tmp, process.ppid), defaultScratchRoot(tmp, process.pid), path.join(tmp, 'atoll-scratch-x1'), path.join(tmp, 'other-123')];
    for (const dir of kept) fs.mkdirSync(dir);

    expect(removeStaleScratchRoots(tmp)).toEqual([deadRoot]);
    expect(fs.existsSync(deadRoot)).toBe(false);
    for (const dir of kept) expect(fs.existsSync(dir)).toBe(true);
    expect(removeStaleScratchRoots(tmp)).toEqual([]);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('SCRATCH_DIR at start: what a former front left there goes, in the background; nothing else in the folder is touched', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-test-'));
  try {
    const left = ['cell1-g1', 'cell2-g7', 'quarantine1-g2', 'cell1-g1.trash', '.retired-0b7a6c8e-4f1d-4c1e-9a7e-2f7f3b9d1c55'];
    for (const name of left) fs.mkdirSync(path.join(root, name, 'run', 'deep'), { recursive: true });
    // What an operator keeps beside, or a folder that only looks like a cell's.
    const others = ['notes.txt', 'cell1', 'cell1-g1-backup', 'mycell1-g1', '.retired-x'];
    for (const name of others) fs.writeFileSync(path.join(root, name), 'keep');
    expect(clearScratchRoot(root)).toBe(left.length);
    const settled = async () => {
      for (let i = 0; i < 200 && fs.readdirSync(root).length > others.length; i++) await new Promise((r) => setTimeout(r, 50));
    };
    await settled();
    expect(fs.readdirSync(root).sort()).toEqual([...others].sort());
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
