/**
 * A run makes no symbolic link: Node's permission model refuses fs.symlink without full read and write access, but on
 * Node 22 and 24 fs.cpSync copies a readable tree's links into the scratch folder in C++, past that check (measured
 * on 22.23 and 24.22; Node 20's cpSync is JavaScript and is refused). Workers refuse fs.cpSync (host-guards.ts), as Node 20 does: no form of cp works under the permission model there, nor
 * fs.cp and fs.promises.cp on 22 and 24 (measured), so nothing an agent could do before is lost. A link in the scratch folder is read and
 * written through as if its target were there: --allow-fs-read and --allow-fs-write check the path named, the kernel
 * follows the link. Readable trees hold links (node_modules/.bin: a run overwrote typescript/bin/tsc through one, run
 * by the next build; an operator's link in AGENTS_DIR to a file outside it).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, type TestServer } from './helpers/server';
import { UserClient, terminal } from './helpers/client';
import { CELL_WALL_MODES } from './helpers/cell-walls';

const COPIER = `
import fs from 'node:fs';
import path from 'node:path';
export default class Copier {
  static agentName = 'copier';
  async execute(ctx) {
    const out = {};
    const attempt = async (name, fn) => { try { out[name] = { ok: true, value: String(await fn()) }; } catch (e) { out[name] = { ok: false, code: e.code }; } };
    const kit = path.join(ctx.input.agentsDir, 'kit');
    const into = path.join(ctx.scratchDir, 'kit');
    await attempt('cp_tree', () => fs.cpSync(kit, into, { recursive: true }));
    await attempt('cp_tree_verbatim', () => fs.cpSync(kit, into + '-v', { recursive: true, verbatimSymlinks: true }));
    await attempt('cp_tree_filtered', () => fs.cpSync(kit, into + '-f', { recursive: true, filter: () => true }));
    await attempt('cp_link', () => fs.cpSync(path.join(kit, 'outside'), path.join(ctx.scratchDir, 'one')));
    // fs.cp and fs.promises.cp are JavaScript: the permission model refuses them (as it refuses every cp on Node 20).
    await attempt('cp_async_tree', () => fs.promises.cp(kit, into + '-a', { recursive: true }));
    await attempt('read_through', () => fs.readFileSync(path.join(into, 'outside'), 'utf8'));
    await attempt('write_through', () => fs.writeFileSync(path.join(into, 'victim'), 'PWNED by a run'));
    await attempt('links_in_scratch', () => {
      const found = [];
      const walk = (d) => { for (const e of fs.readdirSync(d, { withFileTypes: true })) { const p = path.join(d, e.name); if (e.isSymbolicLink()) found.push(p); else if (e.isDirectory()) walk(p); } };
      walk(ctx.scratchDir);
      return found.length;
    });
    return out;
  }
}
`;

describe.each(CELL_WALL_MODES)('%s', (_name, extraEnv) => {
  let server: TestServer;
  let mallory: UserClient;
  let agentsDir: string;
  let outsideDir: string;

  beforeAll(async () => {
    outsideDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-test-outside-'));
    fs.chmodSync(outsideDir, 0o755);
    fs.writeFileSync(path.join(outsideDir, 'front-only.txt'), 'not for agents');
    fs.chmodSync(path.join(outsideDir, 'front-only.txt'), 0o644);
    fs.writeFileSync(path.join(outsideDir, 'victim.txt'), 'untouched');
    fs.chmodSync(path.join(outsideDir, 'victim.txt'), 0o666); // only the walls stand in the way, not the OS
    agentsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'atoll-agents-'));
    fs.chmodSync(agentsDir, 0o755);
    fs.writeFileSync(path.join(agentsDir, 'copier.mjs'), COPIER);
    fs.mkdirSync(path.join(agentsDir, 'kit'));
    fs.symlinkSync(path.join(outsideDir, 'front-only.txt'), path.join(agentsDir, 'kit', 'outside'));
    fs.symlinkSync(path.join(outsideDir, 'victim.txt'), path.join(agentsDir, 'kit', 'victim'));
    server = await startServer({ AGENTS_DIR: agentsDir, CELLS: '1', THREADS_PER_CELL: '1', ...extraEnv });
    mallory = await UserClient.connect(server.url, 'mallory');
  });
  afterAll(async () => {
    mallory?.close();
    await server?.stop();
    fs.rmSync(outsideDir, { recursive: true, force: true });
    fs.rmSync(agentsDir, { recursive: true, force: true });
  });

  test('fs.cpSync brings no link into the scratch folder: nothing outside is read or written through one', async () => {
    const { run_id } = await mallory.start({ agent: 'copier', input: { text: 'copy', agentsDir } });
    const end = terminal(await mallory.waitForRun(run_id)).payload;
    expect([end.status, end.error]).toEqual(['completed', undefined]);
    const got = end.final_response as Record<string, { ok: boolean; value?: string; code?: string }>;
    expect(fs.readFileSync(path.join(outsideDir, 'victim.txt'), 'utf8')).toBe('untouched');
    expect(got.read_through.value).toBeUndefined();
    for (const name of ['cp_tree', 'cp_tree_verbatim', 'cp_tree_filtered', 'cp_link', 'cp_async_tree']) expect([name, got[name]]).toEqual([name, { ok: false, code: 'ERR_ACCESS_DENIED' }]);
    expect(got.links_in_scratch).toEqual({ ok: true, value: '0' });
  }, 60_000);
});
