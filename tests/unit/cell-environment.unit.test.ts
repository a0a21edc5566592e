/**
 * README, "Configuration": cells see none of Atoll's variables, only PATH, LANG, LC_ALL, LC_CTYPE, TZ and NODE_ENV,
 * and NODE_OPTIONS is not passed on either. escape.test.ts checks what a cell's agent finds against
 * CELL_ENV_ALLOWLIST itself, on a server where REDIS_URL and NODE_OPTIONS are unset: a name added to that list
 * (REDIS_URL carries the Redis password) passed it. Here the launch the supervisor makes is given every variable
 * Atoll reads, and what reaches the cell is judged against the README's list, written out.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cellLaunch } from '../../server/cells/cell-sandbox';
import { ENV_VARS } from '../../server/config';

const README_LIST = ['LANG', 'LC_ALL', 'LC_CTYPE', 'NODE_ENV', 'PATH', 'TZ'];

test("a cell's environment is the README's six variables, whatever the front's holds", () => {
  const scratchRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-cell-env-'));
  try {
    const front: NodeJS.ProcessEnv = {};
    for (const name of [...ENV_VARS, 'NODE_OPTIONS', 'HOME', 'USER', 'PGPASSWORD', ...README_LIST]) front[name] = `value-of-${name}`;
    const launch = cellLaunch({ mode: 'off', root: process.cwd(), agentsDir: null, scratchRoot, uidBase: 0 }, 'cell1-g1', 1, front, false);
    expect(Object.keys(launch.env).sort()).toEqual(README_LIST);
    for (const name of README_LIST) expect(launch.env[name]).toBe(`value-of-${name}`);
  } finally {
    fs.rmSync(scratchRoot, { recursive: true, force: true });
  }
});
