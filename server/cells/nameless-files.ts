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
 *
 * The same read counts the cell's descriptors against its ceiling (descriptor-ceiling.ts) first: that needs only
 * the list, so it is done whether or not nameless files are read (RUN_SCRATCH_MB=0).
 */
import fs from 'node:fs';
import type { FrontToCell } from '../../protocol/cell-messages.js';

/** While a cell holds runs: how often its descriptors are read. At rest the check is ten times rarer. */
export const NAMELESS_BUSY_INTERVAL_MS = 100;
/** Per tick, the front reads cells' descriptors for this long in all (~400 descriptors), 64 of each cell at least. */
export const STEP_BUDGET_MS = 5;

/**
 * One read of a cell's descriptors, resumable: a descriptor costs ~12 µs to read (a link and a stat), and agent code
 * can hold thousands (RUN_OPEN_FILES bounds most ways to open, not all: README, threat model): 20,000 of them held
 * the front's event loop ~250 ms per read, every 100 ms (helper-69). So each tick reads for STEP_BUDGET_MS in all
 * (at least 64 descriptors of each cell, the cells taking turns to go first) and goes on from there at the next; a
 * cell's report is sent once a read is complete.
 */
export interface DescriptorRead {
  readonly pid: number;
  readonly under: string;
  readonly fds: string[];
  /** The next descriptor to read. */
  at: number;
  readonly held: Map<string, number>;
}

/** A read of `pid`'s descriptors, or null if they cannot be listed (the cell is gone). */
export function startDescriptorRead(pid: number, cellDir: string): DescriptorRead | null {
  try {
    return { pid, under: `${cellDir}/`, fds: fs.readdirSync(`/proc/${pid}/fd`), at: 0, held: new Map() };
  } catch {
    return null;
  }
}

/**
 * Goes on with `read` until `until` (at least 64 descriptors a step, so every read ends). Returns the bytes of disk
 * held by the nameless files the cell holds open, by the first name under its folder (a run's folder, or what lay
 * beside them; '' for those no longer under it), once the read is complete; null until then.
 */
export function stepDescriptorRead(read: DescriptorRead, until: number): Map<string, number> | null {
  const { pid, under, fds, held } = read;
  for (let n = 0; read.at < fds.length; read.at++, n++) {
    // The clock is read every 64 descriptors, after them: each step reads at least 64.
    if (n > 0 && (n & 63) === 0 && Date.now() >= until) return null;
    const link = `/proc/${pid}/fd/${fds[read.at]}`;
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

/** A whole read at once (tests, and callers that know the cell holds few descriptors); null: the cell is gone. */
export function readNamelessFiles(pid: number, cellDir: string): Map<string, number> | null {
  const read = startDescriptorRead(pid, cellDir);
  return read && stepDescriptorRead(read, Infinity);
}

export interface NamelessCell {
  pid: number;
  scratchDir: string;
  /** Whether runs are in the cell (the busy pace). */
  busy: boolean;
  send: (msg: Extract<FrontToCell, { type: 'nameless_files' }>) => void;
  /** The most descriptors the cell may hold (descriptor-ceiling.ts); null: no ceiling. */
  maxDescriptors: number | null;
  /** The cell holds `held` descriptors, more than its ceiling. */
  overDescriptors: (held: number) => void;
}

/**
 * Reads every cell's nameless files at the busy pace and tells a cell when what it holds changed (an empty report
 * once they are gone). One timer for all cells; a read under way goes on at the next tick whether the cell is busy.
 */
export function createNamelessFilesWatch(deps: { cells: () => Iterable<NamelessCell>; intervalMs?: number; stepBudgetMs?: number; readNameless?: boolean }) {
  const readNameless = deps.readNameless ?? true;
  const interval = deps.intervalMs ?? NAMELESS_BUSY_INTERVAL_MS;
  const stepBudgetMs = deps.stepBudgetMs ?? STEP_BUDGET_MS;
  /** Reads under way, by cell pid: a cell of many descriptors is read over several ticks. */
  const reads = new Map<number, DescriptorRead>();
  /** What each cell (by pid) was last told, as a comparable string. */
  const told = new Map<number, string>();
  let timer: NodeJS.Timeout | null = null;
  let ticks = 0;

  function tick(): void {
    ticks++;
    const seen = new Set<number>();
    const until = Date.now() + stepBudgetMs;
    const all = [...deps.cells()];
    // Each tick a different cell goes first: a cell of many descriptors does not always take the budget.
    const first = all.length ? ticks % all.length : 0;
    for (const cell of [...all.slice(first), ...all.slice(0, first)]) {
      seen.add(cell.pid);
      let read = reads.get(cell.pid);
      if (!read) {
        if (!cell.busy && ticks % 10 !== 0) continue;
        const started = startDescriptorRead(cell.pid, cell.scratchDir);
        if (!started) continue;
        if (cell.maxDescriptors !== null && started.fds.length > cell.maxDescriptors) {
          cell.overDescriptors(started.fds.length);
          continue;
        }
        if (!readNameless) continue;
        reads.set(cell.pid, (read = started));
      }
      const held = stepDescriptorRead(read, until);
      if (!held) continue;
      reads.delete(cell.pid);
      const byFolder = [...held].sort(([a], [b]) => (a < b ? -1 : 1));
      const key = JSON.stringify(byFolder);
      if ((told.get(cell.pid) ?? '[]') === key) continue;
      told.set(cell.pid, key);
      cell.send({ type: 'nameless_files', byFolder });
    }
    for (const pid of told.keys()) if (!seen.has(pid)) told.delete(pid);
    for (const pid of reads.keys()) if (!seen.has(pid)) reads.delete(pid);
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
