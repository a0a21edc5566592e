/**
 * What runs leave in and beside their scratch folders, where cells run as the front's own OS user (the Docker
 * image's `node`, or CELL_UID_BASE=0): the front removed it with fs.rmSync on its event loop, so a read-only folder
 * threw EACCES into the dispatch and the front exited, and 3,812 nested folders held its event loop 7.9 s
 * (helper-63). Now leftovers are renamed into the cell's trash (one rename whatever their depth, at most
 * SWEEP_NOW_MAX before a run starts) and removed there in the background by coreutils (remove-tree.ts).
 *
 * Runs server/cells/run-scratch.ts in a node process as `nobody` (root ignores the mode bits a run sets).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './helpers/server';

const NOBODY = 65534;
const canRun = process.platform === 'linux' && process.getuid?.() === 0 && fs.existsSync('/usr/bin/setpriv');

/** Runs `body` (with `scratch`, `cellDir`, `fs`, `path`, `until` in scope) as nobody; returns what it printed as JSON. */
function asNobody(cellDir: string, body: string): any {
  const script = `
    const fs = require('node:fs');
    const path = require('node:path');
    const { createRunScratch } = require(${JSON.stringify(path.join(ROOT, 'dist/server/cells/run-scratch.js'))});
    const cellDir = ${JSON.stringify(cellDir)};
    const scratch = createRunScratch(cellDir, null);
    const until = async (check) => { for (let i = 0; i < 600 && !check(); i++) await new Promise((r) => setTimeout(r, 50)); return check(); };
    (async () => { ${body} })().then((out) => console.log(JSON.stringify(out)), (err) => { console.log(JSON.stringify({ threw: String(err && err.stack || err) })); });
  `;
  const r = spawnSync('/usr/bin/setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, '-e', script], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`exit ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

let root: string;
let cellDir: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-run-scratch-'));
  fs.chmodSync(root, 0o755);
  cellDir = path.join(root, 'cell1-g1');
  fs.mkdirSync(cellDir, { mode: 0o700 });
  fs.chownSync(root, NOBODY, NOBODY);
  fs.chownSync(cellDir, NOBODY, NOBODY);
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

(canRun ? test : test.skip)('a read-only folder left in and beside run folders: nothing throws, the next run starts clean, all of it goes', () => {
  const out = asNobody(
    cellDir,
    `
    const first = scratch.open('r1');
    for (const where of [path.join(first, 'keep'), path.join(cellDir, 'beside')]) {
      fs.mkdirSync(where);
      fs.writeFileSync(path.join(where, 'file'), 'x');
      fs.chmodSync(where, 0o555);
    }
    scratch.close('r1');
    const second = scratch.open('r2');
    const atStart = fs.readdirSync(cellDir);
    scratch.close('r2');
    // Nothing left in the cell's folder, and nothing beside it (its trash and the trash's batches are gone).
    const cleaned = await until(() => fs.readdirSync(cellDir).length === 0 && fs.readdirSync(path.dirname(cellDir)).length === 1);
    return { atStart, second: path.basename(second), cleaned, left: fs.readdirSync(cellDir) };
  `,
  );
  expect(out.threw).toBeUndefined();
  // Only the second run's own folder was there when it started.
  expect(out.atStart).toEqual([out.second]);
  expect(out.cleaned).toBe(true);
});

(canRun ? test : test.skip)('a tree of 6,000 folders beside the runs is moved aside in one rename; many leftovers are moved SWEEP_NOW_MAX at a time, the rest a moment later', () => {
  const out = asNobody(
    cellDir,
    `
    const { SWEEP_NOW_MAX } = require(${JSON.stringify(path.join(ROOT, 'dist/server/cells/run-scratch.js'))});
    const deep = path.join(cellDir, 'deep');
    fs.mkdirSync(deep);
    for (let i = 0; i < 3000; i++) fs.mkdirSync(path.join(deep, 'd' + i, 'e'), { recursive: true });
    for (let i = 0; i < SWEEP_NOW_MAX + 500; i++) fs.mkdirSync(path.join(cellDir, 'many' + i));
    const running = scratch.open('r1');
    const atStart = fs.readdirSync(cellDir).length;
    const cleaned = await until(() => fs.readdirSync(cellDir).length === 1 && fs.readdirSync(path.dirname(cellDir)).length === 1);
    return { atStart, cleaned, left: fs.readdirSync(cellDir), running: path.basename(running), max: SWEEP_NOW_MAX };
  `,
  );
  expect(out.threw).toBeUndefined();
  // deep + 1,500 leftovers: SWEEP_NOW_MAX of them moved before the run's folder was made (the deep one first or
  // among them), the rest after.
  expect(out.atStart).toBe(1501 - out.max + 1);
  expect(out.cleaned).toBe(true);
  expect(out.left).toEqual([out.running]);
});
