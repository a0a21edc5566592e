import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createScratchWatch, startWalk, stepWalk, type ScratchBudget, type ScratchUsage } from '../../workers/cell/scratch-watch';

const MiB = 1024 * 1024;
let cellDir: string;
beforeEach(() => {
  cellDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-scratch-watch-'));
});
afterEach(() => fs.rmSync(cellDir, { recursive: true, force: true }));

const write = (file: string, mb: number) => {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, Buffer.alloc(mb * MiB, 1));
};
/** What `folder` holds, up to the point where it passes `budget`: one walk, not resumed. */
const measureFolder = (folder: string, budget: ScratchBudget): ScratchUsage => {
  const walk = startWalk(folder, false);
  stepWalk(walk, budget, Infinity);
  return walk.usage;
};
const until = async (cond: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
};

test('a folder is measured in disk blocks and names at any depth; a walk stops once past the budget', async () => {
  write(path.join(cellDir, 'a', 'one'), 2);
  write(path.join(cellDir, 'a', 'b', 'two'), 1);
  const sparse = fs.openSync(path.join(cellDir, 'sparse'), 'w');
  fs.ftruncateSync(sparse, 1024 * MiB);
  fs.closeSync(sparse);
  const whole = measureFolder(cellDir, { bytes: 0, entries: 0 });
  expect(whole.entries).toBe(5);
  expect(whole.bytes).toBeGreaterThanOrEqual(3 * MiB);
  expect(whole.bytes).toBeLessThan(4 * MiB);
  for (let i = 0; i < 500; i++) fs.writeFileSync(path.join(cellDir, `f${i}`), '');
  const stopped = measureFolder(cellDir, { bytes: 0, entries: 50 });
  expect(stopped.entries).toBe(51);
});

test('a run over its budget is reported once; two ended runs each within it are not a loose excess; what is loose is', async () => {
  const over: string[] = [];
  const loose: ScratchUsage[] = [];
  let runs = [
    { runId: 'big', scratchDir: path.join(cellDir, 'run-big') },
    { runId: 'ok1', scratchDir: path.join(cellDir, 'run-ok1') },
    { runId: 'ok2', scratchDir: path.join(cellDir, 'run-ok2') },
  ];
  for (const r of runs) fs.mkdirSync(r.scratchDir);
  write(path.join(cellDir, 'run-ok1', 'x'), 3);
  write(path.join(cellDir, 'run-ok2', 'x'), 3);
  const watch = createScratchWatch({ budget: { bytes: 4 * MiB, entries: 100 }, cellDir, runs: () => runs, onRunOver: (id) => over.push(id), onLooseOver: (u) => loose.push(u) });
  watch.start();
  try {
    write(path.join(cellDir, 'run-big', 'x'), 5);
    await until(() => over.length > 0);
    expect(over).toEqual(['big']);
    // The two runs end; their folders (6 MiB together, over one budget) wait for the front to remove them.
    runs = [];
    await new Promise((r) => setTimeout(r, 300));
    expect(loose).toEqual([]);
    write(path.join(cellDir, 'beside'), 5);
    await until(() => loose.length > 0);
    expect(loose).toHaveLength(1);
    expect(over).toEqual(['big']);
  } finally {
    watch.stop();
  }
});
