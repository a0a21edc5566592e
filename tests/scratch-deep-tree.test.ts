/**
 * A tree deeper than PATH_MAX that a run leaves in its scratch folder is removed after the run (helper-65). The run
 * builds a chain of folders ~4,000 characters long, then renames a second such chain into its tip (each path it
 * names stays under PATH_MAX, all inside its own folder: the permission model allows it). fs.rm (full paths) failed
 * ENAMETOOLONG and the tree stayed in the cell's trash for good, walked again by every later pass; remove-tree.ts
 * hands folders to coreutils, which walk by descriptor.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { DEEP_TREE_AGENT } from './helpers/agent-snippets';
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, eventually, terminal } from './helpers/client';


let server: TestServer;
let scratch: string;
let mallory: UserClient;
beforeAll(async () => {
  const agents = agentsDirWith({ 'deep-tree.mjs': DEEP_TREE_AGENT });
  scratch = fs.mkdtempSync(path.join(path.dirname(agents), 'atoll-deep-scratch-'));
  // Its thousands of long-path folders take seconds idle; beside two CPU burners, past the default 30 s deadline,
  // and longer still once the CPU governor demotes its busy thread (off here: this is about removal, not CPU).
  server = await startServer({ AGENTS_DIR: agents, SCRATCH_DIR: scratch, CELLS: '1', THREADS_PER_CELL: '1', RUN_TIMEOUT_MS: '150000', CPU_DEMOTE_AFTER_MS: '0' });
  mallory = await UserClient.connect(server.url, 'mallory');
}, 90_000);
afterAll(async () => {
  mallory?.socket.close();
  await server?.stop();
  // fs.rmSync cannot remove it either (Maximum call stack size exceeded): rm(1) walks by descriptor.
  if (scratch) spawnSync('rm', ['-rf', scratch]);
});

test('a tree deeper than PATH_MAX that a run leaves in its folder is removed after the run', async () => {
  const run = await mallory.start({ agent: 'deep-tree', input: { text: 'go' } });
  // Thousands of folders with long paths: seconds on an idle machine, many more on a starved one.
  const end = terminal(await mallory.waitForRun(run.run_id, 120_000));
  expect(end.payload.final_response).toBe('deep');
  // Everything in the scratch root: the cell's folder (its idle state: empty) and its trash (emptied in the
  // background).
  const leftovers = () => fs.readdirSync(scratch).flatMap((d) => fs.readdirSync(path.join(scratch, d)).map((n) => `${d}/${n}`));
  const clean = await eventually(() => leftovers().length === 0, 60_000);
  expect({ clean, leftovers: leftovers() }).toEqual({ clean: true, leftovers: [] });
}, 200_000);
