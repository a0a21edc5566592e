/**
 * A run cannot keep the front from starting again (helper-65). Its agent builds a folder tree deeper than PATH_MAX in
 * its scratch folder (a ~4,000-character chain, a second one renamed into its tip) and kills its own cell (allowed:
 * contained). The dead cell's folder could not be removed and stayed in SCRATCH_DIR; at the next start with the same
 * SCRATCH_DIR, cellLaunch's fs.rmSync of `cell1-g1` threw (RangeError from Node 20's recursive rimrafSync) and the
 * front exited before listening, on every start. Now a start sets aside what a former front left there and removes
 * it in the background (cell-sandbox.ts clearScratchRoot, remove-tree.ts).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { DEEP_TREE_AGENT } from './helpers/agent-snippets';
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, eventually } from './helpers/client';


let scratch: string;
let agents: string;
const servers: TestServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
  if (scratch) spawnSync('rm', ['-rf', scratch]);
});

test('a front starts again on its SCRATCH_DIR after a run left a deep tree and killed its cell', async () => {
  agents = agentsDirWith({ 'deep-tree.mjs': DEEP_TREE_AGENT });
  scratch = fs.mkdtempSync(path.join(path.dirname(agents), 'atoll-deep-restart-'));
  // Its thousands of long-path folders take seconds idle; beside two CPU burners, past the default 30 s deadline,
  // and longer still once the CPU governor demotes its busy thread (off here: this is about removal, not CPU).
  const env = { AGENTS_DIR: agents, SCRATCH_DIR: scratch, CELLS: '1', THREADS_PER_CELL: '1', RUN_TIMEOUT_MS: '150000', CPU_DEMOTE_AFTER_MS: '0' };
  const first = await startServer(env);
  servers.push(first);
  const mallory = await UserClient.connect(first.url, 'mallory');
  await mallory.start({ agent: 'deep-tree', input: { text: 'go', die: true } });
  // Its cell died and was replaced (cell1-g2); cell1-g1's folder could not be removed.
  expect(await eventually(() => first.logs.some((l) => l.msg === 'cell ready' && l.cell === 'cell1-g2'), 120_000)).toBe(true);
  mallory.socket.close();
  await first.stop();
  const left = fs.readdirSync(scratch);
  // The same SCRATCH_DIR, a new front: it must listen.
  let started: TestServer | null = null;
  let error = '';
  try {
    started = await startServer(env);
    servers.push(started);
  } catch (err) {
    error = String(err).split('\n').slice(0, 3).join(' | ');
  }
  expect({ left, started: started !== null, error }).toMatchObject({ started: true, error: '' });
}, 300_000);
