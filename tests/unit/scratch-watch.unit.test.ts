import { execFileSync } from 'node:child_process';
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
  const watch = createScratchWatch({ budget: { bytes: 4 * MiB, entries: 100 }, cellDir, runs: () => runs, onRunOver: (id) => over.push(id), onLooseOver: (u) => loose.push(u), onStarved: () => {} });
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

/**
 * A child process with a low descriptor limit (`ulimit -n`) runs the watch while every descriptor is taken, as a run
 * holding sockets would take them in a cell: the watch must neither blame the run whose folder it cannot open (it
 * failed it as unreadable before) nor stay blind for ever.
 */
test("a cell out of descriptors blames no run's folder; it waits, goes on once some are back, and gives up past the limit", () => {
  const watchModule = path.join(__dirname, '../../workers/cell/scratch-watch.js');
  const script = `
    const fs = require('node:fs');
    const path = require('node:path');
    const { createScratchWatch } = require(${JSON.stringify(watchModule)});
    const cellDir = process.argv[1];
    const [phase] = process.argv.slice(2);
    const runDir = path.join(cellDir, 'run-a');
    fs.mkdirSync(runDir, { recursive: true });
    fs.mkdirSync(path.join(runDir, 'sub'));
    fs.writeFileSync(path.join(runDir, 'sub', 'x'), 'x');
    const seen = [];
    const watch = createScratchWatch({
      budget: { bytes: 4 * 1048576, entries: 100 }, cellDir, runs: () => [{ runId: 'a', scratchDir: runDir }],
      onRunOver: (id, u) => seen.push('over ' + id + (u.unreadable ? ' unreadable' : '')),
      onLooseOver: () => seen.push('loose'),
      onStarved: () => seen.push('starved'),
      starvedLimitMs: phase === 'giveup' ? 300 : 60000,
    });
    const held = [];
    for (;;) { try { held.push(fs.openSync('/dev/null', 'r')); } catch (e) { if (e.code !== 'EMFILE') throw e; break; } }
    watch.start();
    setTimeout(() => {
      const starvedSeen = seen.slice();
      for (const fd of held) fs.closeSync(fd);
      fs.writeFileSync(path.join(runDir, 'sub', 'big'), Buffer.alloc(5 * 1048576, 1));
      // Under load a check may come round late: wait for a word, 10 s at most.
      const end = Date.now() + 10000;
      const done = () => { watch.stop(); process.stdout.write(JSON.stringify({ held: held.length, starvedSeen, seen })); };
      const poll = () => (seen.length > starvedSeen.length || Date.now() > end ? done() : setTimeout(poll, 20));
      // Given up, the watch has stopped: the 5 MiB stay unseen.
      if (phase === 'giveup') setTimeout(done, 500);
      else poll();
    }, phase === 'giveup' ? 3000 : 1000); // given up after 300 ms: room for a loaded machine's checks
  `;
  const run = (phase: string) =>
    JSON.parse(execFileSync('sh', ['-c', 'ulimit -n 48 && exec "$0" -e "$1" "$2" "$3"', process.execPath, script, cellDir, phase], { encoding: 'utf8' })) as { held: number; starvedSeen: string[]; seen: string[] };
  const waited = run('wait');
  expect(waited.held).toBeGreaterThan(0);
  // Starved for a second: nothing said; given descriptors back, the folder's 5 MiB are seen.
  expect(waited.starvedSeen).toEqual([]);
  expect(waited.seen).toEqual(['over a']);
  fs.rmSync(path.join(cellDir, 'run-a'), { recursive: true, force: true });
  const gaveUp = run('giveup');
  expect(gaveUp.starvedSeen).toEqual(['starved']);
  expect(gaveUp.seen).toEqual(['starved']);
});
