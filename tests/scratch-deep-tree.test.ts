/**
 * A run's scratch leftovers are never removed when their tree is deeper than PATH_MAX (helper-65). A run builds a
 * chain of folders ~4,000 characters long, then renames a second such chain into its tip (each path it names stays
 * under PATH_MAX, all inside its own folder: the permission model allows it). The front's removal (fs.rm, by full
 * path) fails ENAMETOOLONG, makeWritable gives up at the same depth, and the tree stays in the cell's trash for
 * good; every later pass of the trash walks it again (and every other one left the same way), so the background
 * work grows with each such run; a dead cell's folder and a front's stale scratch root stay too. Any user can do it,
 * with or without separate OS users (root gets ENAMETOOLONG as well).
 * Fix (server/cells/run-scratch.ts removeTree): remove relative to a descriptor/cwd that walks down (e.g. a child
 * process `rm -rf --one-file-system` with cwd, or descend by renaming deep subtrees up to the trash's top level
 * before removing), so no path handed to the kernel exceeds PATH_MAX.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, eventually, terminal } from './helpers/client';

const DEEP = `
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
export default class Deep {
  static agentName = 'deep';
  async execute(ctx) {
    const chain = (root) => { let p = root; fs.mkdirSync(p); while (p.length < 4000) { p = path.join(p, 'a'); fs.mkdirSync(p); } return p; };
    const tip = chain(path.join(ctx.scratchDir, 'x'));
    for (let k = 0; k < 2; k++) { chain(path.join(ctx.scratchDir, 'y')); fs.renameSync(path.join(ctx.scratchDir, 'y'), path.join(tip, 'y' + k)); }
    return 'deep';
  }
}
`;

let server: TestServer;
let scratch: string;
let mallory: UserClient;
beforeAll(async () => {
  const agents = agentsDirWith({ 'deep.mjs': DEEP });
  scratch = fs.mkdtempSync(path.join(path.dirname(agents), 'atoll-deep-scratch-'));
  server = await startServer({ AGENTS_DIR: agents, SCRATCH_DIR: scratch, CELLS: '1', THREADS_PER_CELL: '1' });
  mallory = await UserClient.connect(server.url, 'mallory');
}, 90_000);
afterAll(async () => {
  mallory?.socket.close();
  await server?.stop();
  // fs.rmSync cannot remove it either (Maximum call stack size exceeded): rm(1) walks by descriptor.
  if (scratch) spawnSync('rm', ['-rf', scratch]);
});

test('a tree deeper than PATH_MAX that a run leaves in its folder is removed after the run', async () => {
  const run = await mallory.start({ agent: 'deep', input: { text: 'go' } });
  const end = terminal(await mallory.waitForRun(run.run_id));
  expect(end.payload.final_response).toBe('deep');
  // Everything in the scratch root: the cell's folder (its idle state: empty) and its trash (emptied in the
  // background).
  const leftovers = () => fs.readdirSync(scratch).flatMap((d) => fs.readdirSync(path.join(scratch, d)).map((n) => `${d}/${n}`));
  const clean = await eventually(() => leftovers().length === 0, 20_000);
  expect({ clean, leftovers: leftovers() }).toEqual({ clean: true, leftovers: [] });
}, 60_000);
