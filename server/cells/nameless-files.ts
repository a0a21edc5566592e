/**
 * Disk held by files with no name in a cell's scratch folder: one a run unlinked while it held it open, or one it
 * opened nameless (O_TMPFILE). No walk of the folder finds them, and they hold their disk for as long as they are
 * open: a run wrote past its budget that way until its deadline (tests/scratch-budget.test.ts).
 *
 * Why in the front: cells may not read /proc (permission model; see cpu-governor.ts), and the open descriptors of a
 * process are only listed there. The front reads /proc/<cell>/fd, keeps the descriptors whose file has no name left,
 * and tells the cell how much each of its folders' nameless files
 * hold; the cell's scratch watch adds that to what it measures itself (workers/cell/scratch-watch.ts), and decides.
 * Linux only; elsewhere nothing is found.
 */
import fs from 'node:fs';
import type { FrontToCell } from '../../protocol/cell-messages.js';

/** While a cell holds runs: how often its descriptors are read. At rest the check is ten times rarer. */
export const NAMELESS_BUSY_INTERVAL_MS = 100;

/**
 * Bytes of disk held by the nameless files a cell holds open, by the first name under `cellDir` (a run's folder, or
 * what lay beside them; '' for those no longer under it), or null if the cell's descriptors cannot be read (it is gone).
 */
export function readNamelessFiles(pid: number, cellDir: string): Map<string, number> | null {
  let fds: string[];
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return null;
  }
  const under = `${cellDir}/`;
  const held = new Map<string, number>();
  for (const fd of fds) {
    const link = `/proc/${pid}/fd/${fd}`;
    let target: string;
    try {
      target = fs.readlinkSync(link);
    } catch {
      continue; // closed meanwhile
    }
    // A path, not a socket, pipe or anonymous inode.
    if (!target.startsWith('/') || !target.endsWith(' (deleted)')) continue;
    let st: fs.Stats;
    try {
      st = fs.statSync(link);
    } catch {
      continue;
    }
    // " (deleted)" may also end a real name: only a file with no link left holds disk no walk sees.
    if (!st.isFile() || st.nlink !== 0) continue;
    // A cell may write nowhere but its folder, so every nameless file it holds was made there; one whose folder was
    // moved since (to the cell's trash as its run ended, then removed: it was held open past its run, and a later run
    // of the same worker wrote on into it) belongs to no run any more: '' (no run's folder is named so).
    const first = target.startsWith(under) ? target.slice(under.length).split('/')[0] : '';
    held.set(first, (held.get(first) ?? 0) + st.blocks * 512);
  }
  return held;
}

export interface NamelessCell {
  pid: number;
  scratchDir: string;
  /** Whether runs are in the cell (the busy pace). */
  busy: boolean;
  send: (msg: Extract<FrontToCell, { type: 'nameless_files' }>) => void;
}

/**
 * Reads every cell's nameless files at the busy pace and tells a cell when what it holds changed (an empty report
 * once they are gone). One timer for all cells.
 */
export function createNamelessFilesWatch(deps: { cells: () => Iterable<NamelessCell>; intervalMs?: number }) {
  const interval = deps.intervalMs ?? NAMELESS_BUSY_INTERVAL_MS;
  /** What each cell (by pid) was last told, as a comparable string. */
  const told = new Map<number, string>();
  let timer: NodeJS.Timeout | null = null;
  let ticks = 0;

  function tick(): void {
    ticks++;
    const seen = new Set<number>();
    for (const cell of deps.cells()) {
      seen.add(cell.pid);
      if (!cell.busy && ticks % 10 !== 0) continue;
      const held = readNamelessFiles(cell.pid, cell.scratchDir);
      if (!held) continue;
      const byFolder = [...held].sort(([a], [b]) => (a < b ? -1 : 1));
      const key = JSON.stringify(byFolder);
      if ((told.get(cell.pid) ?? '[]') === key) continue;
      told.set(cell.pid, key);
      cell.send({ type: 'nameless_files', byFolder });
    }
    for (const pid of told.keys()) if (!seen.has(pid)) told.delete(pid);
  }

  return {
    start(): void {
      if (timer || process.platform !== 'linux') return;
      timer = setInterval(tick, interval);
      timer.unref();
    },
    stop(): void {
      if (timer) clearInterval(timer);
      timer = null;
    },
  };
}
