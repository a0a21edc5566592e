/**
 * What a run may leave on disk: its scratch folder may hold at most RUN_SCRATCH_MB of disk and RUN_SCRATCH_FILES
 * names. Node's permission model bounds where a run writes, not how much: before this watch one run could fill the
 * disk under SCRATCH_DIR, and every other run's writes there (and the database's, on the same disk) failed.
 *
 * The cell measures each of its runs' folders while they run, from its main thread (a run's synchronous write loop
 * does not hold it up), and fails a run over its budget (LIMIT_EXCEEDED; its worker is terminated). A watch, not a
 * quota: a run may write past its budget for as long as one check takes to come round (README, threat model).
 * Without OS users of their own per cell, a run may also write beside its folder, in the cell's; what is there
 * belongs to no run the cell can name, so over a run's budget the cell exits (CELL_EXIT_SCRATCH) and its runs run
 * again alone in quarantine, where the culprit is named, as with the memory watchdog.
 *
 * Bytes are disk blocks (st_blocks), so a sparse file counts what it holds, not its length; names are every file,
 * folder and link, at any depth. A walk stops as soon as a budget is passed, so a tree of a million names costs one
 * budget's worth of stat calls; the next check waits at least WALK_SHARE times as long as the walk took.
 */
import type { Dir } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';

export interface ScratchBudget {
  /** Disk bytes; 0: unbounded. */
  bytes: number;
  /** Names (files, folders, links); 0: unbounded. */
  entries: number;
}

export interface ScratchUsage {
  bytes: number;
  entries: number;
  /** A folder inside could not be read even after it was made readable again: the run's usage is unknown. */
  unreadable: boolean;
}

/** While runs are in the cell (and for BUSY_TAIL_MS after the last): checks this often. */
export const BUSY_INTERVAL_MS = 50;
export const REST_INTERVAL_MS = 1000;
const BUSY_TAIL_MS = 1000;
/**
 * The next check waits at least this many times as long as the last one took, so walking a large tree costs a bounded
 * share of the cell; but never more than MAX_PAUSE_MS: on a busy machine a walk's time is mostly waiting its turn.
 */
const WALK_SHARE = 4;
const MAX_PAUSE_MS = 500;
/**
 * A settled run's folder still counts as that run's, not as the cell's, until the front has removed it (it does so
 * as it hears of the end): a few legitimate leftovers at once must not add up to a loose excess.
 */
const ENDED_GRACE_MS = 10_000;

export const overBudget = (usage: ScratchUsage, budget: ScratchBudget): boolean =>
  usage.unreadable || (budget.bytes > 0 && usage.bytes > budget.bytes) || (budget.entries > 0 && usage.entries > budget.entries);

/** Adds what `target` holds (itself included unless it is `root`) to `usage`, stopping once it is over `budget`. */
async function measureInto(usage: ScratchUsage, target: string, budget: ScratchBudget, countSelf: boolean): Promise<void> {
  if (countSelf) {
    const st = await fs.lstat(target).catch(() => null);
    if (!st) return;
    usage.entries++;
    usage.bytes += st.blocks * 512;
    if (!st.isDirectory() || overBudget(usage, budget)) return;
  }
  const folders = [target];
  while (folders.length > 0) {
    const folder = folders.pop()!;
    const dir = await openFolder(folder);
    if (dir === 'gone') continue;
    if (dir === 'unreadable') {
      usage.unreadable = true;
      return;
    }
    try {
      // Names a batch at a time, each batch's stat calls at once: a walk takes a few event-loop turns per
      // STAT_BATCH names, not one per name (a busy machine made a walk of 500 names take seconds).
      for (let batch = await readBatch(dir); batch.length > 0; batch = await readBatch(dir)) {
        const ats = batch.map((name) => path.join(folder, name));
        // Gone meanwhile (the run removed it): it holds nothing.
        const stats = await Promise.all(ats.map((at) => fs.lstat(at).catch(() => null)));
        for (let i = 0; i < stats.length; i++) {
          const st = stats[i];
          if (!st) continue;
          usage.entries++;
          usage.bytes += st.blocks * 512;
          if (overBudget(usage, budget)) return;
          // Links are counted, never followed.
          if (st.isDirectory()) folders.push(ats[i]);
        }
      }
    } catch {
      // The folder went away while it was read.
    } finally {
      await dir.close().catch(() => undefined);
    }
  }
}

const STAT_BATCH = 32;

async function readBatch(dir: Dir): Promise<string[]> {
  const names: string[] = [];
  for (let entry = await dir.read(); entry; entry = names.length < STAT_BATCH ? await dir.read() : null) names.push(entry.name);
  return names;
}

/**
 * A folder the run made unreadable (mode 0 or write-only) is made readable again: the cell runs as the run's own
 * OS user, so it may, and a run cannot hide what it holds that way.
 */
async function openFolder(folder: string): Promise<Dir | 'gone' | 'unreadable'> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      return await fs.opendir(folder, { bufferSize: 64 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return 'gone';
      if (attempt > 0 || (code !== 'EACCES' && code !== 'EPERM')) return 'unreadable';
      await fs.chmod(folder, 0o700).catch(() => undefined);
    }
  }
  return 'unreadable';
}

/** What `folder` holds, up to the point where it passes `budget`. */
export async function measureFolder(folder: string, budget: ScratchBudget): Promise<ScratchUsage> {
  const usage: ScratchUsage = { bytes: 0, entries: 0, unreadable: false };
  await measureInto(usage, folder, budget, false);
  return usage;
}

export interface ScratchWatch {
  start(): void;
  /**
   * Disk held by files with no name (unlinked while open, or opened nameless), by the first name under the cell's
   * folder: the front reads it from /proc, which the cell may not (server/cells/nameless-files.ts). Replaces the last.
   */
  namelessFiles(byFolder: Iterable<[name: string, bytes: number]>): void;
  /** A run came into the cell: check soon, at the busy pace, even if the watch was resting. */
  runArrived(): void;
  stop(): void;
}

export function createScratchWatch(deps: {
  budget: ScratchBudget;
  /** The cell's folder, where the front makes its runs' folders. */
  cellDir: string;
  /** The runs in the cell now, with their folders. */
  runs: () => Iterable<{ runId: string; scratchDir: string }>;
  /** A run's folder is over its budget: called once per run. */
  onRunOver: (runId: string, usage: ScratchUsage) => void;
  /** What is in the cell's folder beside its runs' (or in an ended run's) is over a run's budget: called once. */
  onLooseOver: (usage: ScratchUsage) => void;
  now?: () => number;
}): ScratchWatch {
  const now = deps.now ?? Date.now;
  const { budget } = deps;
  /** Folder names of runs that ended, and when the watch first saw them gone. */
  const ended = new Map<string, number>();
  let live = new Map<string, string>();
  /** The front's last report of nameless files, by first name under the cell's folder. */
  let nameless = new Map<string, number>();
  /** Folder names of runs reported over their budget. */
  const reported = new Set<string>();
  let timer: NodeJS.Timeout | null = null;
  let checking = false;
  let running = false;
  let lastBusyAt = -Infinity;

  async function check(): Promise<void> {
    const current = new Map<string, string>();
    for (const run of deps.runs()) current.set(path.basename(run.scratchDir), run.runId);
    const at = now();
    if (current.size > 0) lastBusyAt = at;
    for (const name of live.keys()) if (!current.has(name)) ended.set(name, at);
    for (const [name, since] of ended) if (current.has(name) || at - since > ENDED_GRACE_MS) ended.delete(name);
    live = current;
    // A folder already reported stays so until it is gone: its run failed for it, and the front removes it.
    for (const name of reported) if (!current.has(name) && !ended.has(name)) reported.delete(name);

    for (const [name, runId] of current) {
      if (!running) return;
      if (reported.has(name)) continue;
      const usage = await measureFolder(path.join(deps.cellDir, name), budget);
      usage.bytes += nameless.get(name) ?? 0;
      if (overBudget(usage, budget) && running && live.get(name) === runId) {
        reported.add(name);
        deps.onRunOver(runId, usage);
      }
    }
    // Cells with OS users of their own cannot list their folder (the front's, passable only), and their runs cannot
    // write in it either: nothing loose to count.
    // Nameless files of no running run's folder are loose, whether or not the cell may list its folder.
    const namelessLoose = [...nameless].reduce((sum, [name, bytes]) => (current.has(name) || reported.has(name) ? sum : sum + bytes), 0);
    const loose = (await looseUsage(current)) ?? (namelessLoose > 0 ? { bytes: 0, entries: 0, unreadable: false } : null);
    if (loose) loose.bytes += namelessLoose;
    if (loose && overBudget(loose, budget) && running) {
      stop();
      deps.onLooseOver(loose);
    }
  }

  /** What is in the cell's folder that no running run owns; null if the cell may not list it. */
  async function looseUsage(current: Map<string, string>): Promise<ScratchUsage | null> {
    let dir: Dir;
    try {
      dir = await fs.opendir(deps.cellDir, { bufferSize: 64 });
    } catch {
      return null;
    }
    const loose: ScratchUsage = { bytes: 0, entries: 0, unreadable: false };
    try {
      for await (const entry of dir) {
        if (current.has(entry.name)) continue;
        if (reported.has(entry.name)) continue;
        if (ended.has(entry.name)) {
          // An ended run's folder the front has not removed yet: measured alone, against one run's budget.
          const own = await measureFolder(path.join(deps.cellDir, entry.name), budget);
          if (overBudget(own, budget)) return own;
          continue;
        }
        await measureInto(loose, path.join(deps.cellDir, entry.name), budget, true);
        if (overBudget(loose, budget)) return loose;
      }
    } catch {
      // The cell's folder went away: its cell is ending.
    }
    return loose;
  }

  function schedule(ms: number): void {
    timer = setTimeout(tick, ms);
    timer.unref();
  }

  function tick(): void {
    timer = null;
    checking = true;
    const started = now();
    check().then(
      () => {
        checking = false;
        if (!running) return;
        const pace = now() - lastBusyAt < BUSY_TAIL_MS ? BUSY_INTERVAL_MS : REST_INTERVAL_MS;
        schedule(Math.max(pace, Math.min(MAX_PAUSE_MS, WALK_SHARE * (now() - started))));
      },
      () => {
        checking = false;
        if (running) schedule(REST_INTERVAL_MS);
      },
    );
  }

  function stop(): void {
    running = false;
    if (timer) clearTimeout(timer);
    timer = null;
  }

  return {
    start() {
      if (running || (budget.bytes === 0 && budget.entries === 0)) return;
      running = true;
      schedule(BUSY_INTERVAL_MS);
    },
    namelessFiles(byFolder) {
      nameless = new Map(byFolder);
    },
    runArrived() {
      lastBusyAt = now();
      if (!running || checking || !timer) return;
      clearTimeout(timer);
      schedule(BUSY_INTERVAL_MS);
    },
    stop,
  };
}
