/**
 * A run's scratch folder holds at most RUN_SCRATCH_MB of disk and RUN_SCRATCH_FILES names (workers/cell/scratch-watch.ts).
 * Node's permission model bounds where a run writes, not how much: before the watch, a run could fill the disk under
 * SCRATCH_DIR (and the database's, when they share it), and every other run's writes there failed. Each test here was
 * red without the watch: the run completed.
 */
import fs from 'node:fs';
import { agentsDirWith, startServer, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';
import { CELL_WALL_MODES } from './helpers/cell-walls';

const FILLER = `
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
// Kept open past its run: module state outlives a run on the worker that serves its user's next one.
let kept = null;
export default class Filler {
  static agentName = 'filler';
  async execute(ctx) {
    const { mode, mb = 0, files = 0, holdMs = 0 } = ctx.input;
    const chunk = Buffer.alloc(1 << 20, 120);
    const held = [];
    const fill = (file) => {
      const fd = fs.openSync(file, 'w');
      // One synchronous loop: the worker's event loop never turns while it writes.
      for (let i = 0; i < mb; i++) fs.writeSync(fd, chunk);
      fs.closeSync(fd);
    };
    if (mode === 'starve') {
      // libuv's thread pool (4 threads, the whole cell's) kept busy, for as long as the write takes and longer.
      for (let i = 0; i < 4; i++) crypto.pbkdf2('p', 's', 1e7, 64, 'sha512', () => undefined);
      await new Promise((r) => setTimeout(r, 300));
    }
    if (mode === 'stream' || mode === 'starve') fill(path.join(ctx.scratchDir, 'big'));
    if (mode === 'files') for (let i = 0; i < files; i++) fs.writeFileSync(path.join(ctx.scratchDir, 'f' + i), '');
    if (mode === 'hidden') {
      // Each half within the budget, the two together over it: only a count that reads the hidden half sees it.
      const hidden = path.join(ctx.scratchDir, 'hidden');
      fs.mkdirSync(hidden);
      fill(path.join(hidden, 'big'));
      fs.chmodSync(hidden, 0);
      fill(path.join(ctx.scratchDir, 'big'));
    }
    if (mode === 'unlinked' || mode === 'nameless') {
      // A file with no name holds disk for as long as it is open: one unlinked after it was opened, or one opened
      // nameless in the folder (O_TMPFILE). No walk of the folder finds either.
      const file = path.join(ctx.scratchDir, 'gone');
      const fd = mode === 'unlinked' ? fs.openSync(file, 'w') : fs.openSync(ctx.scratchDir, 0o20000000 | 0o200000 | fs.constants.O_RDWR);
      if (mode === 'unlinked') fs.unlinkSync(file);
      for (let i = 0; i < mb; i++) fs.writeSync(fd, chunk);
      held.push(fd);
    }
    if (mode === 'keep') {
      // A FileHandle, left open: its worker is retired (RUN_OPEN_FILES), as for a descriptor from fs.openSync.
      kept = await fs.promises.open(path.join(ctx.scratchDir, 'kept'), 'w');
      await kept.write(chunk);
      return { done: mode };
    }
    if (mode === 'grow') {
      if (kept === null) throw new Error('nothing kept on this worker');
      for (let i = 0; i < mb; i++) await kept.write(chunk);
    }
    if (mode === 'beside') fill(path.join(path.dirname(ctx.scratchDir), 'beside-' + Math.random().toString(36).slice(2)));
    if (mode === 'sparse') {
      const fd = fs.openSync(path.join(ctx.scratchDir, 'sparse'), 'w');
      fs.ftruncateSync(fd, 1 << 30);
      fs.closeSync(fd);
    }
    // Held so its cell's watch has time to look, however busy the machine (a stop ends the hold).
    await new Promise((r) => {
      const t = setTimeout(r, holdMs);
      ctx.signal.addEventListener('abort', () => { clearTimeout(t); r(); });
    });
    for (const fd of held) fs.closeSync(fd);
    return { done: mode };
  }
}
`;

const BUDGET = { RUN_SCRATCH_MB: '16', RUN_SCRATCH_FILES: '500' };

describe.each(CELL_WALL_MODES)('%s', (_name, extraEnv) => {
  let server: TestServer;
  let mallory: UserClient;
  let alice: UserClient;
  let agentsDir: string;

  beforeAll(async () => {
    agentsDir = agentsDirWith({ 'filler.mjs': FILLER });
    server = await startServer({ AGENTS_DIR: agentsDir, CELLS: '1', THREADS_PER_CELL: '2', ...BUDGET, ...extraEnv });
    [mallory, alice] = await Promise.all([UserClient.connect(server.url, 'mallory'), UserClient.connect(server.url, 'alice')]);
  });
  afterAll(async () => {
    mallory?.close();
    alice?.close();
    await server?.stop();
    fs.rmSync(agentsDir, { recursive: true, force: true });
  });

  const end = async (client: UserClient, input: Record<string, unknown>) => {
    const { run_id } = await client.start({ agent: 'filler', input: { text: 'fill', holdMs: 3000, ...input } });
    return terminal(await client.waitForRun(run_id, 60_000)).payload;
  };

  test('a run writing past RUN_SCRATCH_MB in one synchronous loop fails with LIMIT_EXCEEDED; a neighbour in its cell completes', async () => {
    const [filled, neighbour] = await Promise.all([end(mallory, { mode: 'stream', mb: 2048, holdMs: 0 }), end(alice, { mode: 'stream', mb: 4 })]);
    expect(filled.status).toBe('failed');
    expect(filled.error).toMatchObject({ code: 'LIMIT_EXCEEDED' });
    expect(String((filled.error as { message: string }).message)).toContain('RUN_SCRATCH_MB=16');
    expect([neighbour.status, neighbour.final_response]).toEqual(['completed', { done: 'stream' }]);
  }, 90_000);

  test('and past RUN_SCRATCH_FILES names, even empty ones', async () => {
    const filled = await end(mallory, { mode: 'files', files: 2000, holdMs: 60_000 });
    expect([filled.status, (filled.error as { code: string } | undefined)?.code]).toEqual(['failed', 'LIMIT_EXCEEDED']);
  }, 90_000);

  test('a folder the run made unreadable still counts', async () => {
    const filled = await end(mallory, { mode: 'hidden', mb: 12, holdMs: 60_000 });
    expect([filled.status, (filled.error as { code: string } | undefined)?.code]).toEqual(['failed', 'LIMIT_EXCEEDED']);
  }, 90_000);

  test('and is read, not presumed over: an unreadable folder within the budget is no failure', async () => {
    // A folder the cell cannot read counts as over the budget (its usage is unknown), so only a run within it shows
    // that the cell made the folder readable and counted it: 2 × 4 MiB, held for 3 s of checks.
    const within = await end(mallory, { mode: 'hidden', mb: 4 });
    expect([within.status, within.final_response]).toEqual(['completed', { done: 'hidden' }]);
  }, 90_000);

  test.each(['unlinked', 'nameless'])('a file with no name, held open (%s), counts as long as it is open', async (mode) => {
    const filled = await end(mallory, { mode, mb: 64, holdMs: 60_000 });
    expect([filled.status, filled.error]).toEqual(['failed', expect.objectContaining({ code: 'LIMIT_EXCEEDED' })]);
  }, 90_000);

  test("a file kept open past its run retires its worker: the user's next run finds nothing kept to write on", async () => {
    // helper-68 kept a FileHandle past its run and wrote 3 GiB into it from the next run on that worker, its folder
    // removed meanwhile; now anything left open at a run's end is a leak (RUN_OPEN_FILES).
    const { run_id } = await mallory.start({ agent: 'filler', input: { text: 'fill', mode: 'keep', holdMs: 0 } });
    expect(terminal(await mallory.waitForRun(run_id, 60_000)).payload.status).toBe('completed');
    const view = (await mallory.http('GET', `/v1/runs/${run_id}`)).body;
    expect(view.isolation).toMatchObject({ leaks: { file: 1 }, recycled: 'leaked_resources' });
    const grown = await end(mallory, { mode: 'grow', mb: 64, holdMs: 0 });
    expect(grown).toMatchObject({ status: 'failed', error: { code: 'AGENT_ERROR', message: expect.stringContaining('nothing kept on this worker') } });
  }, 120_000);

  test('within the budget a run completes: disk blocks count, not a sparse file\'s length', async () => {
    const [small, sparse] = await Promise.all([end(mallory, { mode: 'stream', mb: 8 }), end(alice, { mode: 'sparse' })]);
    expect([small.status, small.final_response]).toEqual(['completed', { done: 'stream' }]);
    expect([sparse.status, sparse.final_response]).toEqual(['completed', { done: 'sparse' }]);
  }, 90_000);

  test("beside its folder, in its cell's: refused where cells have users of their own; otherwise the cell exits and the run, run again alone, is named", async () => {
    const beside = await end(mallory, { mode: 'beside', mb: 64, holdMs: 60_000 });
    expect(beside.status).toBe('failed');
    if (extraEnv.CELL_UID_BASE === '0') {
      expect(beside.error).toMatchObject({ code: 'LIMIT_EXCEEDED' });
      expect(String((beside.error as { message: string }).message)).toContain('beside its scratch folder');
    } else {
      // The cell's folder is root's and only passable: the run cannot write there at all.
      expect(beside.error).toMatchObject({ code: 'AGENT_ERROR' });
    }
    // The server goes on serving: a run after it completes.
    const after = await end(alice, { mode: 'stream', mb: 1, holdMs: 0 });
    expect(after.status).toBe('completed');
  }, 120_000);
  test("with the cell's thread pool kept busy by the run, its writes still count (last: the pool stays busy a while)", async () => {
    const filled = await end(mallory, { mode: 'starve', mb: 2048, holdMs: 0 });
    expect([filled.status, filled.error]).toEqual(['failed', expect.objectContaining({ code: 'LIMIT_EXCEEDED' })]);
  }, 90_000);
});
