/**
 * libuv's thread pool is the cell's, not a run's: every worker's asynchronous fs, crypto, zlib and dns.lookup run on
 * it. The CPU governor lowers hungry OS threads to nice 19 and leaves the cell's own alone, which it learns at the
 * cell's boot; the pool's threads started only at the first job, after that, so a run that kept the pool busy (async
 * crypto, as any password hashing does) had them lowered for the cell's life: the worker takes back only its own
 * thread's priority, and every later run of the cell, another user's, did its file, crypto and DNS work at nice 19.
 */
import fs from 'node:fs';
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { cellPids } from './helpers/cell-processes';
import { UserClient, terminal } from './helpers/client';
import { DEMOTED_NICE } from '../protocol/cell-messages';

const linux = process.platform === 'linux' ? test : test.skip;

const HOG = `
import crypto from 'node:crypto';
export default class Hog {
  static agentName = 'pool-hog';
  async execute(ctx) {
    const end = Date.now() + ctx.input.ms;
    const one = () => new Promise((resolve) => crypto.pbkdf2('p', 's', 100000, 32, 'sha256', resolve));
    let n = 0;
    // Two jobs at a time: two of the pool's threads busy, each well over the governor's quarter of a core.
    await Promise.all([0, 1].map(async () => { while (Date.now() < end) { await one(); n++; } }));
    return { n };
  }
}
`;

const HASHER = `
import crypto from 'node:crypto';
export default class Hasher {
  static agentName = 'hasher';
  async execute() {
    for (let i = 0; i < 5; i++) await new Promise((resolve) => crypto.pbkdf2('p', 's', 20000, 32, 'sha256', resolve));
    return 'hashed';
  }
}
`;

// The governor's own check, on the same server: a run that keeps its own OS thread busy is lowered. Without it the
// test above passes on a governor that lowers nothing (turned off, or its demote lost on the way to the cell).
const SPIN = `
import os from 'node:os';
export default class Spin {
  static agentName = 'spin';
  async execute(ctx) {
    const end = Date.now() + ctx.input.ms;
    const priority = os.getPriority(0);
    for (let i = 1; Date.now() < end; i++) if (i % 100000 === 0 && os.getPriority(0) > priority) return 'demoted';
    return 'never demoted';
  }
}
`;

let server: TestServer;
let mallory: UserClient;
let victim: UserClient;

beforeAll(async () => {
  const dir = agentsDirWith({ 'pool-hog.mjs': HOG, 'hasher.mjs': HASHER, 'spin.mjs': SPIN });
  server = await startServer({ AGENTS_DIR: dir, CELLS: '1', THREADS_PER_CELL: '1', CPU_DEMOTE_AFTER_MS: '300' });
  [mallory, victim] = await Promise.all([UserClient.connect(server.url, 'mallory'), UserClient.connect(server.url, 'victim')]);
}, 60_000);
afterAll(async () => {
  mallory?.close();
  victim?.close();
  await server?.stop();
});

function cellPid(frontPid: number): number {
  const pids = cellPids(frontPid);
  expect(pids).toHaveLength(1);
  return pids[0];
}

/** The cell's OS threads at DEMOTED_NICE, with their CPU time (clock ticks). */
function demoted(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const f = fs.readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[16]) >= DEMOTED_NICE) out.set(Number(t), Number(fields[11]) + Number(fields[12]));
    } catch {
      // the OS thread ended
    }
  }
  return out;
}

linux("a run that keeps the thread pool busy leaves none of the cell's OS threads lowered for later runs", async () => {
  const cell = cellPid(server.proc.pid!);
  // A few tries: on a loaded machine the pool's threads may not stay hungry long enough in one run.
  let left = new Map<number, number>();
  for (let i = 0; i < 3 && left.size === 0; i++) {
    const { run_id } = await mallory.start({ agent: 'pool-hog', input: { ms: 2500 } });
    expect(terminal(await mallory.waitForRun(run_id)).payload.status).toBe('completed');
    left = demoted(cell);
  }
  // Another user's run afterwards: its crypto runs on the same pool.
  const { run_id } = await victim.start({ agent: 'hasher', input: {} });
  expect(terminal(await victim.waitForRun(run_id)).payload.final_response).toBe('hashed');
  const after = demoted(cell);
  const victimTicksAtNice19 = [...after].reduce((sum, [tid, ticks]) => sum + ticks - (left.get(tid) ?? ticks), 0);
  if (after.size) console.log(`OS threads of the cell still at nice ${DEMOTED_NICE} after the runs: ${after.size}; CPU the victim's run spent on them: ${victimTicksAtNice19 * 10} ms`);
  // The run's worker took its own priority back; nothing else of the cell was lowered.
  expect([...left.keys()]).toEqual([]);
  expect([...after.keys()]).toEqual([]);
  // ...and not because the governor lowers nothing here: a run spinning on its own OS thread is lowered (a state, not
  // a time: it spins until its priority drops, or 30 s).
  const spin = await mallory.start({ agent: 'spin', input: { ms: 30_000 } });
  expect(terminal(await mallory.waitForRun(spin.run_id, 45_000)).payload.final_response).toBe('demoted');
  expect((await mallory.http('GET', `/v1/runs/${spin.run_id}`)).body.isolation).toMatchObject({ cpu_demoted: true });
}, 120_000);
