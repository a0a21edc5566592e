/**
 * Code a finished run left behind can wake in its idle worker without any handle (an Atomics.waitAsync timeout) and
 * keep the thread busy for good. Its run completed with a clean report and Piscina counted the worker idle: the thread
 * took a core at full priority for the cell's life (the CPU governor reads no cell without a long run), and once the
 * pool was full, the run of another user handed to that worker (the idle one used least recently, expected to refuse
 * it) was never read: it stayed queued for ever, since no deadline runs before a run starts.
 */
import fs from 'node:fs';
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { cellPids } from './helpers/cell-processes';
import { UserClient, terminal } from './helpers/client';

const linux = process.platform === 'linux' ? test : test.skip;

const SPINNER = `
export default class Spinner {
  static agentName = 'spinner';
  async execute() {
    // No handle stands for it: the run ends clean, and the callback wakes in the idle worker.
    Atomics.waitAsync(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300).value.then(() => { for (;;) {} });
    return 'armed';
  }
}
`;

let server: TestServer;
const clients: UserClient[] = [];
const connect = async (user: string) => {
  const c = await UserClient.connect(server.url, user);
  clients.push(c);
  return c;
};

beforeAll(async () => {
  // One cell of one worker and no spare: the pool is full at four workers (three burst workers per worker).
  server = await startServer({ AGENTS_DIR: agentsDirWith({ 'spinner.mjs': SPINNER }), CELLS: '1', THREADS_PER_CELL: '1', WARM_SPARE_THREADS: '0' });
}, 60_000);
afterAll(async () => {
  for (const c of clients) c.close();
  await server?.stop();
});

function cellPid(frontPid: number): number {
  const pids = cellPids(frontPid);
  expect(pids).toHaveLength(1);
  return pids[0];
}

/** CPU time (ms) of the cell's busiest OS thread but its main one over `ms`. */
async function busiestThreadMs(pid: number, ms: number): Promise<number> {
  const read = () => {
    const out = new Map<string, number>();
    for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
      if (Number(t) === pid) continue;
      try {
        const f = fs.readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8').slice(0);
        const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
        out.set(t, (Number(fields[11]) + Number(fields[12])) * 10);
      } catch {
        // the OS thread ended
      }
    }
    return out;
  };
  const before = read();
  await new Promise((r) => setTimeout(r, ms));
  let max = 0;
  for (const [t, cpu] of read()) max = Math.max(max, cpu - (before.get(t) ?? cpu));
  return max;
}

linux("a worker kept busy by what its run left is ended: it neither holds a core nor swallows another user's run", async () => {
  const mallory = await connect('mallory');
  const armed = await mallory.start({ agent: 'spinner', input: {} });
  expect(terminal(await mallory.waitForRun(armed.run_id)).payload).toMatchObject({ status: 'completed', final_response: 'armed' });
  const view = (await mallory.http('GET', `/v1/runs/${armed.run_id}`)).body;
  expect(view.isolation.recycled).toBeNull(); // nothing the worker's checks can see

  // Three other users fill the pool, one fresh worker each.
  for (const user of ['u2', 'u3', 'u4']) {
    const c = await connect(user);
    const { run_id } = await c.start({ agent: 'echo', input: user });
    expect(terminal(await c.waitForRun(run_id)).payload.final_response).toBe(user);
  }
  // The pool is full: the next new user's run goes to the idle worker used least recently, mallory's.
  const victim = await connect('victim');
  const started = Date.now();
  const { run_id } = await victim.start({ agent: 'echo', input: 'still served' });
  const end = await Promise.race([victim.waitForRun(run_id).then(terminal), new Promise<null>((r) => setTimeout(() => r(null), 20_000))]);
  console.log(`the victim's run ${end ? `ended in ${Date.now() - started} ms` : 'had not ended after 20 s'}`);
  expect(end?.payload).toMatchObject({ status: 'completed', final_response: 'still served' });
  expect((await victim.http('GET', `/v1/runs/${run_id}`)).body.attempts).toBe(1);

  // No thread of the cell keeps a core busy any more (a spinning one takes ~1,000 ms of CPU a second).
  const busiest = await busiestThreadMs(cellPid(server.proc.pid!), 1000);
  console.log(`the cell's busiest OS thread used ${busiest} ms of CPU in 1 s`);
  expect(busiest).toBeLessThan(300);
}, 90_000);
