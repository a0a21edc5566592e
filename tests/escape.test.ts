/**
 * Walls, not conventions: an agent that tries every way out (tests/fixtures/escape-agents/escape.mjs) reaches
 * nothing it was not handed, and the server, the other cells and other users' runs carry on untouched.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startServer, ROOT, testDatabaseUrl, type TestServer } from './helpers/server';
import { cellPids } from './helpers/cell-processes';
import { TEST_STORE } from './helpers/test-database';
import { UserClient, eventually, terminal } from './helpers/client';
import { CELL_ENV_ALLOWLIST } from '../server/cells/cell-sandbox';
import { CELL_WALL_MODES } from './helpers/cell-walls';

const LLM_KEY = 'sk-escape-test-llm-key-0123456789';
describe.each(CELL_WALL_MODES)('%s', (_name, extraEnv) => {
let server: TestServer;
let mallory: UserClient;
let victim: UserClient;
const ownUsers = process.getuid?.() === 0 && !extraEnv.CELL_UID_BASE;

const linux = process.platform === 'linux' ? test : test.skip;
const uidOf = (pid: number) => Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

// A unix socket on the host (abstract: no file), which the agent must not reach.
const unixName = `atoll-escape-${process.pid}-${Object.keys(extraEnv).length}`;
let unixServer: net.Server;
let unixConnections = 0;

beforeAll(async () => {
  unixServer = net.createServer((s) => {
    unixConnections++;
    s.destroy();
  });
  await new Promise<void>((resolve) => unixServer.listen(`\0${unixName}`, resolve));
  server = await startServer({ AGENTS_DIR: path.join(ROOT, 'tests/fixtures/escape-agents'), CELLS: '2', THREADS_PER_CELL: '1', LLM_API_KEY: LLM_KEY, LLM_BASE_URL: 'http://127.0.0.1:9/v1', LLM_MODEL: 'none', ...extraEnv });
  [mallory, victim] = await Promise.all([UserClient.connect(server.url, 'mallory'), UserClient.connect(server.url, 'victim')]);
});
afterAll(async () => {
  unixServer?.close();
  mallory?.close();
  victim?.close();
  await server?.stop();
});



linux('every escape an agent tries fails, and the front, the other cell and another user carry on', async () => {
  const frontPid = server.proc.pid!;
  const cellsBefore = cellPids(frontPid);
  expect(cellsBefore).toHaveLength(2);
  // Node 22 and 24 let worker threads read their process's working directory whatever --allow-fs-read says:
  // a cell never works in the front's folder (where the SQLite file is), only in its own scratch folder.
  for (const pid of cellsBefore) expect(fs.readlinkSync(`/proc/${pid}/cwd`)).toMatch(/atoll-scratch-\d+\/cell\d+-g\d+$/);
  // On SQLite the agent also goes for the database file. PostgreSQL has no file here: its wall is that no
  // credentials (DATABASE_URL) reach a cell, checked below on both stores.
  const dbFile = TEST_STORE === 'sqlite' ? path.join(server.dir, 'atoll.db') : null;
  const input = { text: 'escape', frontPid, otherPids: cellsBefore, dbFile, root: ROOT, frontPort: Number(new URL(server.url).port), unixName };
  const { run_id } = await mallory.start({ agent: 'escape', input });
  const end = terminal(await mallory.waitForRun(run_id));
  expect([end.payload.status, end.payload.error]).toEqual(['completed', undefined]);
  const got = end.payload.final_response as Record<string, { ok: boolean; value?: string; code?: string; message?: string; secretish?: string[] }>;

  // No memory shared with the cell's other workers is within reach (the warm-up lock leaves workerData first).
  expect(got.shared_memory).toEqual({ ok: true, value: '' });

  // Nothing secret in the environment: only the allow-list crosses into a cell.
  const envKeys = got.env.value!.split(',').filter(Boolean);
  expect(got.env.secretish).toEqual([]);
  for (const key of envKeys) expect(CELL_ENV_ALLOWLIST).toContain(key);
  expect(JSON.stringify(got)).not.toContain(LLM_KEY);
  expect(JSON.stringify(got)).not.toContain('test-secret-test-secret');
  expect(envKeys).not.toContain('DATABASE_URL');
  expect(JSON.stringify(got)).not.toContain(testDatabaseUrl(server.dir));

  const refused = ['spawn', 'kill_front', 'kill_group', 'raw_kill_front', 'restore_kill', 'renice_front', 'dlopen', 'binding', 'proc_mem', 'front_environ', 'read_etc', 'read_source', 'write_outside', 'new_worker', 'module_register', 'v8_flags', 'v8_heap_snapshot_limit', 'broadcast_channel', 'broadcast_channel_module'];
  if (dbFile) refused.push('read_db', 'native_sqlite');
  else expect([got.read_db, got.native_sqlite]).toEqual([undefined, undefined]);
  if (got.module_register_hooks) refused.push('module_register_hooks');
  if (got.module_compile_cache) refused.push('module_compile_cache');
  // node:sqlite exists from Node 22: there the guard, not the permission model, refuses it.
  const hasNodeSqlite = Boolean((process as unknown as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule?.('node:sqlite'));
  if (dbFile && hasNodeSqlite) expect(got.node_sqlite).toMatchObject({ ok: false, code: 'ERR_ACCESS_DENIED' });
  else expect(got.node_sqlite).toBeUndefined();
  const otherCell = Object.keys(got).filter((k) => k.startsWith('kill_cell_') || k.startsWith('renice_cell_'));
  expect(otherCell).toHaveLength(2);
  refused.push(...otherCell);
  for (const name of refused) {
    expect([name, got[name]?.ok]).toEqual([name, false]);
  }
  // The permission model, not an accident, said no.
  for (const name of ['spawn', ...(dbFile ? ['read_db'] : []), 'proc_mem', 'write_outside', 'kill_front', 'renice_front', 'new_worker', 'module_register', 'v8_flags', 'v8_heap_snapshot_limit', 'broadcast_channel', 'broadcast_channel_module']) expect([name, got[name].code]).toEqual([name, 'ERR_ACCESS_DENIED']);
  // No MessagePort (the run's, Piscina's) comes out of async_hooks; AsyncLocalStorage works as before.
  // Also through a getter that answers differently the second time, a store's own _propagate, a made-up store.
  expect(got.ports_via_async_hooks).toEqual({ ok: true, value: expect.stringMatching(/^0;(shadow refused: TypeError,fake refused: TypeError|stores without a hook);true$/) });
  // Node 20 and 22 run AsyncLocalStorage on a hook: there both ways around it are refused.
  if (Number(process.versions.node.split('.')[0]) < 24) expect(got.ports_via_async_hooks.value).toMatch(/shadow refused/);
  expect(got.async_local_storage).toEqual({ ok: true, value: 'kept' });
  expect(server.stderr()).not.toContain('from the hooks thread');
  expect(got.renice_self).toEqual({ ok: true, value: 'ok' });
  // The front's priority is untouched.
  expect(os.getPriority(frontPid)).toBe(os.getPriority(process.pid));
  expect(got.dlopen.code).toBe('ERR_DLOPEN_DISABLED');
  // Under the permission model, the database file is the front's alone for the OS too.
  if (dbFile) expect(fs.statSync(dbFile).mode & 0o077).toBe(0);
  // The run's own scratch folder works, and it started empty.
  expect(got.scratch_was_empty).toEqual({ ok: true, value: 'left by mallory' });

  // The host's own network (AGENT_EGRESS=public): the front's API, PostgreSQL, Redis, the metadata service, a unix
  // socket and UDP, refused by the egress wall at once, whatever name or form the address takes and whatever shared
  // module the agent patched; the unix socket's server saw no one; a loopback DNS server is refused where it is set.
  const egress = Object.keys(got).filter((k) => k.startsWith('egress_') && !k.startsWith('egress_own_'));
  expect(egress).toHaveLength(9);
  for (const name of egress) expect([name, got[name].ok, got[name].code]).toEqual([name, false, 'EACCES']);
  expect(unixConnections).toBe(0);
  expect(got.egress_own_udp6).toEqual({ ok: true, value: 'bound' });
  expect([got.dns_server_loopback.ok, got.dns_server_loopback.code]).toEqual([false, 'ERR_ACCESS_DENIED']);

  // The cell's descriptors (its channel to the front, the log): every way to use one the thread did not open is
  // refused by the descriptor wall itself, not by an accident of the descriptor's type.
  const fdAttempts = Object.keys(got).filter((k) => k.startsWith('fd_') && !k.startsWith('fd_own_'));
  expect(fdAttempts).toHaveLength(19);
  for (const name of fdAttempts) expect([name, got[name].ok, got[name].code]).toEqual([name, false, 'ERR_ACCESS_DENIED']);
  // Nothing it wrote reached the front: no forged event in the run's log, no forged line in the front's output.
  expect(JSON.stringify(await mallory.waitForRun(run_id))).not.toContain('forged by the agent');
  // What it printed is in the log as data: every line naming the front is the front's (none is the agent's), the
  // printed lines are strings of the cell's `"from":"output"` lines, and ctx.log's fields cannot replace the line's own.
  const logLines = () =>
    [...server.stdout().split('\n'), ...server.stderr().split('\n')].flatMap((line) => {
      try {
        return [JSON.parse(line) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  const msgOf = (line: unknown) => {
    try {
      return (JSON.parse(String(line)) as { msg?: string }).msg;
    } catch {
      return undefined;
    }
  };
  const printedLines = () => logLines().filter((l) => l.from === 'output').map((l) => `${l.stream} ${msgOf(l.line)}`);
  // Printed output travels the cell's stdio, not the run's channel: it may land just after the run's end.
  await eventually(() => printedLines().filter((p) => p.includes('run finished (')).length >= 4);
  const lines = logLines();
  expect(lines.filter((l) => l.process === 'front' && String(l.msg).includes('run finished ('))).toEqual([]);
  expect(printedLines()).toEqual(expect.arrayContaining(['stdout run finished (console.log)', 'stderr run finished (console.error)', 'stdout run finished (stdout.write)', 'stderr run finished (_rawDebug)']));
  const agentLine = lines.find((l) => l.from === 'agent' && l.msg === 'run finished (ctx.log)');
  expect(agentLine).toMatchObject({ run_id, fields: { process: 'front', run_id: 'forged-run', user_id: 'forged-user' } });
  expect([agentLine!.process, agentLine!.user_id]).toEqual([undefined, expect.any(String)]);
  expect(agentLine!.user_id).not.toBe('forged-user');
  // Its own descriptors work as ever; a closed one is no longer its own.
  expect(got.fd_own_file).toEqual({ ok: true, value: 'mine ERR_ACCESS_DENIED' });
  expect(got.fd_own_stream).toEqual({ ok: true, value: 'streamed' });
  expect(got.fd_own_promises).toEqual({ ok: true, value: 'handled' });

  // The isolation report names the walls it saw refuse something, and the metric counts the run.
  const view = (await mallory.http('GET', `/v1/runs/${run_id}`)).body;
  expect(view.isolation.refused).toEqual(expect.arrayContaining(['signal', 'priority', 'worker', 'module_hooks', 'v8', 'fd', 'egress', 'broadcast_channel']));
  const metrics = (await mallory.http('GET', '/metrics')).body as string;
  expect(metrics).toMatch(/^atoll_walls_hit_total\{wall="signal",node="[^"]+"\} [1-9]/m);
  expect(metrics).toMatch(/^atoll_walls_hit_total\{wall="fd",node="[^"]+"\} [1-9]/m);
  expect(metrics).toMatch(/^atoll_walls_hit_total\{wall="egress",node="[^"]+"\} [1-9]/m);
  // A run that tried nothing has nothing named.
  const clean = await victim.start({ agent: 'echo', input: 'clean' });
  await victim.waitForRun(clean.run_id);
  expect((await victim.http('GET', `/v1/runs/${clean.run_id}`)).body.isolation.refused).toEqual([]);

  // Everything else carries on: the front answers, both cells are the same processes, another user's run completes.
  const v = await victim.start({ agent: 'echo', input: 'still here' });
  expect(terminal(await victim.waitForRun(v.run_id)).payload).toMatchObject({ status: 'completed', final_response: 'still here' });
  expect(cellPids(frontPid).sort()).toEqual(cellsBefore.sort());
  expect(server.proc.exitCode).toBeNull();

  // What the run wrote left with it: the next run (another user's, maybe on the same worker) finds an empty folder.
  const again = await victim.start({ agent: 'escape', input: { ...input, otherPids: [] } });
  const second = terminal(await victim.waitForRun(again.run_id)).payload.final_response as Record<string, { ok: boolean; value?: string }>;
  expect(second.scratch_was_empty).toEqual({ ok: true, value: 'left by victim' });
  // Beside its folder a run can leave nothing a later run finds: with OS users of their own (root) the cell's
  // folder is root's and only passable; otherwise what is left there is swept when a run ends.
  if (ownUsers) for (const r of [got, second]) for (const name of ['write_scratch_parent', 'list_scratch_parent']) expect([name, r[name].ok]).toEqual([name, false]);
  expect(second.read_stash.ok).toBe(false);
}, 60_000);

// A run's code can act after its run has ended (a V8 timer is no handle the checks see): what it writes beside its
// folder then must not reach the next run in its cell, another user's. Swept before each run's folder is made.
linux('a file written beside its folder after its run has ended never reaches a later run of the cell', async () => {
  const plant = await mallory.start({ agent: 'late-writer', input: { text: 'plant', mode: 'plant' } });
  expect(terminal(await mallory.waitForRun(plant.run_id)).payload.final_response).toBe('armed');
  const plantedIn = (await mallory.http('GET', `/v1/runs/${plant.run_id}`)).body.ran_on.cell;
  const cellDirs = cellPids(server.proc.pid!).map((pid) => fs.readlinkSync(`/proc/${pid}/cwd`));
  // Planted (unless the cell's own OS user may not write there), once its run is over.
  if (!ownUsers) expect(await eventually(() => cellDirs.some((d) => fs.existsSync(path.join(d, 'planted'))), 10_000)).toBe(true);
  else await new Promise((resolve) => setTimeout(resolve, 500));
  // Runs of another user until one lands in the planter's cell: none finds it.
  let sameCell = 0;
  for (let i = 0; i < 8 && sameCell === 0; i++) {
    const look = await victim.start({ agent: 'late-writer', input: { text: `look ${i}`, mode: 'read' } });
    const found = terminal(await victim.waitForRun(look.run_id)).payload.final_response;
    expect(found).not.toMatch(/planted by/);
    if ((await victim.http('GET', `/v1/runs/${look.run_id}`)).body.ran_on.cell === plantedIn) sameCell++;
  }
  expect(sameCell).toBe(1);
}, 60_000);

// As root, each cell runs as an OS user of its own: the kernel refuses its signals to the front and to the
// other cells even if agent code got past the JS guard. (In the Docker image the front is `node` and the JS
// guard and the permission model are the walls: README, threat model.)
linux('as root, every cell runs as an OS user of its own (unless CELL_UID_BASE=0)', () => {
  const pids = cellPids(server.proc.pid!);
  const uids = pids.map(uidOf);
  if (!ownUsers) return expect(uids.every((u) => u === process.getuid!())).toBe(true);
  expect(uids.every((u) => u !== 0)).toBe(true);
  expect(new Set(uids).size).toBe(pids.length);
});
});
