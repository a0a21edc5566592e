/**
 * The walls around a cell process, decided by the front before it forks one: what the cell's environment
 * holds, what Node's permission model lets it read and write, and which OS user it runs as. Agent code runs
 * in the cell's workers and is semi-trusted (npm dependencies, model-chosen tools), so nothing the front
 * knows reaches a cell unless it is listed here.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { processAlive } from '../process-alive.js';
import { RETIRED, removeTree, retire } from './remove-tree.js';

/**
 * The only variables a cell (and so every worker and agent) sees. Secrets (AUTH_JWT_SECRET, LLM_API_KEY),
 * DATABASE_URL and NODE_OPTIONS never cross: cells get what they need in their init message.
 */
export const CELL_ENV_ALLOWLIST = ['PATH', 'LANG', 'LC_ALL', 'LC_CTYPE', 'TZ', 'NODE_ENV'] as const;

export function cellEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const key of CELL_ENV_ALLOWLIST) if (env[key] !== undefined) out[key] = env[key];
  return out;
}

export interface CellSandboxOptions {
  /** 'permission': Node's permission model (the default); 'off': none (development of Atoll itself only). */
  mode: 'permission' | 'off';
  /** Project root: the cell may read its dist/, node_modules/ and package.json, nothing else of it. */
  root: string;
  agentsDir: string | null;
  /** Where the front put AGENTS_DIR's compiled TypeScript agents (null: none): cells read it, never write it. */
  agentCacheDir?: string | null;
  /** Where each cell gets its scratch folder (runs' ctx.scratchDir live in it). */
  scratchRoot: string;
  /** First OS user id for cells when the front runs as root (cell slot n runs as uidBase + n); 0: off. */
  uidBase: number;
}

export interface CellLaunch {
  env: NodeJS.ProcessEnv;
  execArgv: string[];
  uid?: number;
  gid?: number;
  /**
   * The cell's own scratch folder (its runs' folders go in it), created for it and removed when it dies. The cell
   * also starts in it: on Node 22 and 24 the permission model lets a process's worker threads read its working
   * directory whatever --allow-fs-read says (measured: Node 20 does not), so the front's folder, where a SQLite
   * database may live, must never be a cell's working directory.
   */
  scratchDir: string;
}

/** Node 20 and 22.0–22.12 call it --experimental-permission; later versions --permission. */
export function permissionFlag(): string {
  return process.allowedNodeEnvironmentFlags.has('--permission') ? '--permission' : '--experimental-permission';
}

/** The front runs as root and may give each cell an OS user of its own (so no cell can signal another process). */
export function separateUsers(uidBase: number): boolean {
  return uidBase > 0 && typeof process.getuid === 'function' && process.getuid() === 0;
}

export function cellLaunch(opts: CellSandboxOptions, cellId: string, slot: number, env: NodeJS.ProcessEnv, ownUsers = separateUsers(opts.uidBase)): CellLaunch {
  const scratchDir = path.join(opts.scratchRoot, cellId);
  // Nothing of a former front's cell of this name may reach this one: set aside (one rename), removed in the
  // background. fs.rmSync here threw on a tree a run made deeper than PATH_MAX, and the front could not start.
  void retire(scratchDir);
  // The root may be passed through (each cell's OS user reaches its own folder) but not listed.
  fs.mkdirSync(opts.scratchRoot, { recursive: true, mode: 0o711 });
  fs.chmodSync(opts.scratchRoot, 0o711);
  fs.mkdirSync(scratchDir, { mode: 0o700 });
  const launch: CellLaunch = { env: cellEnvironment(env), execArgv: [], scratchDir };
  if (ownUsers) {
    launch.uid = launch.gid = opts.uidBase + slot;
    // root's, and only passable: the cell reaches the run folders the front makes for it, nothing else.
    fs.chmodSync(scratchDir, 0o111);
  }
  if (opts.mode === 'permission') {
    const read = [path.join(opts.root, 'dist'), path.join(opts.root, 'node_modules'), path.join(opts.root, 'package.json'), scratchDir];
    if (opts.agentsDir) read.push(opts.agentsDir);
    if (opts.agentCacheDir) read.push(opts.agentCacheDir);
    // No --allow-addons (native code would run outside the model), no --allow-child-process, no /proc, no
    // database file: workers reach the database through the front (server/store/worker-query-gate.ts).
    launch.execArgv = [permissionFlag(), ...read.map((p) => `--allow-fs-read=${p}`), `--allow-fs-write=${scratchDir}`, '--allow-worker', '--no-warnings=ExperimentalWarning'];
  }
  return launch;
}

const SCRATCH_ROOT = /^atoll-scratch-(\d+)$/;

/** The names a front gives what it keeps in a scratch root: cells' folders, their trash, what it is removing. */
const LEFT_BY_A_FRONT = /^(?:(?:cell|quarantine)\d+-g\d+(?:\.trash)?|\.retired-[0-9a-f-]{36})$/;

/**
 * SCRATCH_DIR at a front's start: what a former front left there (its cells' folders and trash, and anything it was
 * still removing) is set aside and removed in the background; nothing else in the folder is touched. Returns how many.
 */
export function clearScratchRoot(scratchRoot: string): number {
  let names: string[];
  try {
    names = fs.readdirSync(scratchRoot);
  } catch {
    return 0;
  }
  const left = names.filter((name) => LEFT_BY_A_FRONT.test(name));
  for (const name of left) {
    if (name.startsWith(RETIRED)) void removeTree(path.join(scratchRoot, name));
    else void retire(path.join(scratchRoot, name));
  }
  return left.length;
}

/** Default scratch root: one folder per front process under the OS temp dir. */
export function defaultScratchRoot(tmpDir = os.tmpdir(), pid = process.pid): string {
  return path.join(tmpDir, `atoll-scratch-${pid}`);
}

/**
 * Removes the default scratch roots of fronts that are gone (killed, or stopped: a front leaves its root to the next
 * start rather than race its exiting cells), with whatever their runs left in them: agents' files must not outlive the
 * process that ran them. Only this OS user's, and only roots whose process is not alive. Returns what it removed.
 */
export function removeStaleScratchRoots(tmpDir = os.tmpdir(), alive: (pid: number) => boolean = processAlive): string[] {
  const removed: string[] = [];
  for (const name of fs.readdirSync(tmpDir)) {
    const pid = SCRATCH_ROOT.exec(name)?.[1];
    if (!pid || Number(pid) === process.pid || alive(Number(pid))) continue;
    const dir = path.join(tmpDir, name);
    try {
      if (fs.lstatSync(dir).uid !== process.getuid?.()) continue;
    } catch {
      continue; // another start removed it first
    }
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // A read-only folder, or a tree deeper than PATH_MAX (fs.rmSync overflows its stack on one): coreutils, in
      // the background.
      void removeTree(dir);
    }
    removed.push(dir);
  }
  return removed;
}

/**
 * Cells with an OS user of their own must be able to read Atoll's code and AGENTS_DIR: each one listable and
 * readable by others (r-x for a folder, r for a file), every folder above it searchable (x is enough: a folder
 * a user may pass through but not list, as the tests' 0711 temporary folder or a home directory often is, was
 * refused here until 2026-12-06, and cells silently ran as the front's own user). Says why not (cells then run as
 * the front's user), or null.
 */
export function cellSandboxWarning(opts: { root: string; agentsDir: string | null; uidBase: number }): string | null {
  if (!separateUsers(opts.uidBase)) return null;
  for (const target of [path.join(opts.root, 'dist', 'workers', 'cell', 'main.js'), ...(opts.agentsDir ? [opts.agentsDir] : [])]) {
    for (let p = target; ; p = path.dirname(p)) {
      const stat = fs.statSync(p);
      const needed = p !== target ? 0o001 : stat.isDirectory() ? 0o005 : 0o004;
      if ((stat.mode & needed) !== needed) return `cells cannot run as OS users of their own: ${p} is not ${needed === 0o001 ? 'searchable' : 'readable'} by other users (mode ${(stat.mode & 0o777).toString(8)}); make it so, or set CELL_UID_BASE=0`;
      if (p === path.dirname(p)) break;
    }
  }
  return null;
}
