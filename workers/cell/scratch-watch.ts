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
 * budget's worth of stat calls.
 *
 * Walks are synchronous: agent code can fill libuv's thread pool (four slow crypto jobs), and an asynchronous walk
 * then waited behind them while a run wrote 1.7 GiB past a 16 MiB budget (helper-68). They are resumable, so no
 * folder holds the cell's main thread for long: each check walks for CHECK_BUDGET_MS at most (every folder at least a
 * little), folders whose last walk fit in one check first, then the large ones taking turns to go first. A folder
 * of thousands of names takes several checks to walk, so its largest files (those of its last complete walk) are
 * read at every check by their size now: a run that writes into one big file beside thousands of names is seen at
 * once. When runs beside it were full of names, a run writing in one loop was seen only after 0.9-1 GiB while every
 * folder waited for the slowest walk (helper-68).
 */
import fs from 'node:fs';
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
/** The largest files of a folder's last walk, looked at between its walks. */
const HOT_FILES = 4;
/**
 * A settled run's folder is not counted as the cell's until the front has removed it (it does so as it hears of the
 * end): a few legitimate leftovers at once must not add up to a loose excess. What a run goes on writing there after
 * its end, through a descriptor it kept, has no name once the front has removed the folder: the front counts it.
 */
const ENDED_GRACE_MS = 10_000;

export const overBudget = (usage: ScratchUsage, budget: ScratchBudget): boolean =>
  usage.unreadable || (budget.bytes > 0 && usage.bytes > budget.bytes) || (budget.entries > 0 && usage.entries > budget.entries);

/** The largest files seen in a walk, with their size then. */
type HotFiles = Map<string, number>;

function noteHot(hot: HotFiles, file: string, bytes: number): void {
  if (hot.size < HOT_FILES) return void hot.set(file, bytes);
  let smallest: string | null = null;
  for (const [f, b] of hot) if (smallest === null || b < hot.get(smallest)!) smallest = f;
  if (bytes > hot.get(smallest!)!) {
    hot.delete(smallest!);
    hot.set(file, bytes);
  }
}

/**
 * A walk of one folder, resumable: it goes on from where it stopped at the next check once its share of this one is
 * spent, so one folder of thousands of names never holds the cell's main thread (or the other folders' checks) for
 * long. What it has counted so far is a lower bound of what the folder holds: over the budget already is over it.
 */
export interface Walk {
  readonly usage: ScratchUsage;
  /** Folders still to read. */
  readonly folders: string[];
  /** The folder being read, and where. */
  current: { folder: string; dir: fs.Dir } | null;
  /** The largest files it found (those it skips too, by their size now). */
  readonly hot: HotFiles;
  /** Paths not counted (the caller counts them itself), nor walked into. */
  readonly skip: (at: string) => boolean;
  /** Its last step stopped because the cell had no descriptor left to open a folder with: it goes on next time. */
  starved: boolean;
}

export function startWalk(target: string, countSelf: boolean, skip: (at: string) => boolean = () => false): Walk {
  const walk: Walk = { usage: { bytes: 0, entries: 0, unreadable: false }, folders: [], current: null, hot: new Map(), skip, starved: false };
  if (!countSelf) {
    walk.folders.push(target);
    return walk;
  }
  const st = lstat(target);
  if (!st) return walk;
  walk.usage.entries++;
  walk.usage.bytes += st.blocks * 512;
  if (st.isDirectory()) walk.folders.push(target);
  else if (st.isFile()) noteHot(walk.hot, target, st.blocks * 512);
  return walk;
}

/** Goes on with `walk` until it is done (true), over `budget` (true), or `until` has passed (false: call again). */
export function stepWalk(walk: Walk, budget: ScratchBudget, until: number): boolean {
  const { usage } = walk;
  walk.starved = false;
  for (let n = 0; ; n++) {
    if (overBudget(usage, budget)) return finish(walk);
    // The clock is read every 64 names: a name costs microseconds.
    if ((n & 63) === 63 && Date.now() >= until) return false;
    if (!walk.current) {
      const folder = walk.folders.pop();
      if (folder === undefined) return true;
      const dir = openFolder(folder);
      if (dir === 'gone') continue;
      if (dir === 'starved') {
        walk.folders.push(folder);
        walk.starved = true;
        return false;
      }
      if (dir === 'unreadable') {
        usage.unreadable = true;
        return finish(walk);
      }
      walk.current = { folder, dir };
    }
    let entry: fs.Dirent | null;
    try {
      entry = walk.current.dir.readSync();
    } catch {
      entry = null; // the folder went away while it was read
    }
    if (!entry) {
      closeCurrent(walk);
      continue;
    }
    const at = path.join(walk.current.folder, entry.name);
    // Gone meanwhile (the run removed it): it holds nothing.
    const st = lstat(at);
    if (!st) continue;
    if (walk.skip(at)) {
      if (st.isFile()) noteHot(walk.hot, at, st.blocks * 512);
      continue;
    }
    usage.entries++;
    usage.bytes += st.blocks * 512;
    // Links are counted, never followed.
    if (st.isDirectory()) walk.folders.push(at);
    else if (st.isFile()) noteHot(walk.hot, at, st.blocks * 512);
  }
}

function closeCurrent(walk: Walk): void {
  try {
    walk.current?.dir.closeSync();
  } catch {
    // closed already
  }
  walk.current = null;
}

/** Ends a walk early (over its budget, or abandoned): its open folder is closed. */
export function finish(walk: Walk): true {
  closeCurrent(walk);
  walk.folders.length = 0;
  return true;
}

function lstat(at: string): fs.Stats | null {
  try {
    return fs.lstatSync(at);
  } catch {
    return null;
  }
}

/**
 * A folder the run made unreadable (mode 0 or write-only) is made readable again: the cell runs as the run's own
 * OS user, so it may, and a run cannot hide what it holds that way. With no descriptor left in the cell (EMFILE,
 * ENFILE: some run holds them, or the host ran out) the folder is 'starved', not unreadable: its run is not the one to
 * blame, and failing it as over its budget named an innocent run (helper-70).
 */
function openFolder(folder: string): fs.Dir | 'gone' | 'unreadable' | 'starved' {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      return fs.opendirSync(folder, { bufferSize: 64 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return 'gone';
      if (code === 'EMFILE' || code === 'ENFILE') return 'starved';
      if (attempt > 0 || (code !== 'EACCES' && code !== 'EPERM')) return 'unreadable';
      try {
        fs.chmodSync(folder, 0o700);
      } catch {
        // not ours to change: unreadable
      }
    }
  }
  return 'unreadable';
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

/** A running run's folder, as the watch last saw it. */
interface Watched {
  runId: string;
  /** The walk in progress. */
  walk: Walk | null;
  /**
   * The largest files of its last complete walk: read at every check, by their size now, and skipped by the walk in
   * progress, so a file that grows counts at once however long the walk of its folder's other names takes.
   */
  hot: HotFiles;
  /** Its last complete walk took one check or less: it goes first. */
  small: boolean;
}

/** Per check, the cell's main thread walks at most this long: a fifth of the busy pace. */
const CHECK_BUDGET_MS = 10;
/**
 * A cell out of descriptors is waited for this long: a burst of opens (many reads at once) passes within it, while
 * a run that holds them (through what RUN_OPEN_FILES does not count) would blind the watch for as long as it likes.
 */
export const STARVED_LIMIT_MS = 2000;

export function createScratchWatch(deps: {
  budget: ScratchBudget;
  /** The cell's folder, where the front makes its runs' folders. */
  cellDir: string;
  /** The runs in the cell now, with their folders. */
  runs: () => Iterable<{ runId: string; scratchDir: string }>;
  /** A run's folder is over its budget: called once per run. */
  onRunOver: (runId: string, usage: ScratchUsage) => void;
  /** What is in the cell's folder beside its runs' is over a run's budget: called once. */
  onLooseOver: (usage: ScratchUsage) => void;
  /**
   * The cell has had no descriptor to open a folder with for `starvedLimitMs`: the watch cannot see what its runs
   * write, and cannot tell which run holds the descriptors. Called once; the watch stops.
   */
  onStarved: (forMs: number) => void;
  /** How long the watch waits for descriptors before it gives up (default STARVED_LIMIT_MS). */
  starvedLimitMs?: number;
  now?: () => number;
}): ScratchWatch {
  const now = deps.now ?? Date.now;
  const starvedLimitMs = deps.starvedLimitMs ?? STARVED_LIMIT_MS;
  /** Since when every check has found the cell without a descriptor to open a folder with (null: it found one). */
  let starvedSince: number | null = null;
  const { budget } = deps;
  /** Folder names of runs that ended, and when the watch first saw them gone. */
  const ended = new Map<string, number>();
  /** Running runs' folders by name. */
  let live = new Map<string, Watched>();
  /** The front's last report of nameless files, by first name under the cell's folder. */
  let nameless = new Map<string, number>();
  /** Folder names of runs reported over their budget. */
  const reported = new Set<string>();
  /** The walk of what lies beside the runs' folders (null: none in progress, or the cell may not list its folder). */
  let looseWalk: Walk | null = null;
  let looseListable = true;
  /** Which of the large folders goes first: each check, the next one. */
  let turn = 0;
  let timer: NodeJS.Timeout | null = null;
  let running = false;
  let lastBusyAt = -Infinity;

  /** The hot files by their size now (gone: nothing), as a usage to add. */
  function hotNow(hot: HotFiles): ScratchUsage {
    const usage: ScratchUsage = { bytes: 0, entries: 0, unreadable: false };
    for (const file of hot.keys()) {
      const st = lstat(file);
      if (!st) continue;
      usage.entries++;
      usage.bytes += st.blocks * 512;
    }
    return usage;
  }

  const plus = (a: ScratchUsage, b: ScratchUsage, bytes = 0): ScratchUsage => ({ bytes: a.bytes + b.bytes + bytes, entries: a.entries + b.entries, unreadable: a.unreadable || b.unreadable });

  function check(): void {
    const at = now();
    const current = new Map<string, Watched>();
    for (const run of deps.runs()) {
      const name = path.basename(run.scratchDir);
      const known = live.get(name);
      current.set(name, known && known.runId === run.runId ? known : { runId: run.runId, walk: null, hot: new Map(), small: true });
    }
    if (current.size > 0) lastBusyAt = at;
    for (const [name, w] of live) {
      if (current.has(name)) continue;
      ended.set(name, at);
      if (w.walk) finish(w.walk);
    }
    for (const [name, since] of ended) if (current.has(name) || at - since > ENDED_GRACE_MS) ended.delete(name);
    live = current;
    // A folder already reported stays so until it is gone: its run failed for it, and the front removes it.
    for (const name of reported) if (!current.has(name) && !ended.has(name)) reported.delete(name);

    const until = now() + CHECK_BUDGET_MS;
    let starved = false;
    const small = [...current].filter(([, w]) => w.small);
    const large = [...current].filter(([, w]) => !w.small);
    turn = large.length ? (turn + 1) % large.length : 0;
    for (const [name, w] of [...small, ...large.slice(turn), ...large.slice(0, turn)]) {
      if (!running) return;
      if (reported.has(name)) continue;
      const folder = path.join(deps.cellDir, name);
      const hot = w.hot;
      if (!w.walk) w.walk = startWalk(folder, false, (p) => hot.has(p));
      const started = now();
      // Every folder walks a little even once the check's time is spent: none waits for the others for ever.
      const done = stepWalk(w.walk, budget, Math.max(until, started + 1));
      starved ||= w.walk.starved;
      const usage = plus(w.walk.usage, hotNow(hot), nameless.get(name) ?? 0);
      if (done) {
        w.small = now() - started < CHECK_BUDGET_MS;
        w.hot = w.walk.hot;
        w.walk = null;
      }
      if (overBudget(usage, budget) && running) {
        reported.add(name);
        if (w.walk) finish(w.walk);
        w.walk = null;
        deps.onRunOver(w.runId, usage);
      }
    }
    starved = checkLoose(current, until) || starved;
    if (!running) return;
    if (!starved) starvedSince = null;
    else if (starvedSince === null) starvedSince = at;
    else if (at - starvedSince >= starvedLimitMs) {
      const forMs = at - starvedSince;
      stop();
      deps.onStarved(forMs);
    }
  }

  /** What lies beside the runs' folders (and nameless files of no run), against one run's budget. True: starved. */
  function checkLoose(current: Map<string, Watched>, until: number): boolean {
    const namelessLoose = [...nameless].reduce((sum, [name, bytes]) => (current.has(name) || reported.has(name) ? sum : sum + bytes), 0);
    // Cells with OS users of their own cannot list their folder (the front's, passable only), and their runs cannot
    // write in it either: only nameless files can be loose there.
    if (looseListable && !looseWalk) {
      try {
        fs.accessSync(deps.cellDir, fs.constants.R_OK);
        const top = (p: string) => path.dirname(p) === deps.cellDir;
        looseWalk = startWalk(deps.cellDir, false, (p) => top(p) && (live.has(path.basename(p)) || ended.has(path.basename(p)) || reported.has(path.basename(p))));
      } catch {
        looseListable = false;
      }
    }
    let usage: ScratchUsage = { bytes: namelessLoose, entries: 0, unreadable: false };
    let starved = false;
    if (looseWalk) {
      const done = stepWalk(looseWalk, budget, Math.max(until, now() + 1));
      starved = looseWalk.starved;
      usage = plus(usage, looseWalk.usage);
      if (done) looseWalk = null;
    }
    if (overBudget(usage, budget) && running) {
      stop();
      deps.onLooseOver(usage);
    }
    return starved;
  }

  /** When the pending check is due. */
  let nextCheckAt = 0;

  function schedule(ms: number): void {
    nextCheckAt = now() + ms;
    timer = setTimeout(tick, ms);
    timer.unref();
  }

  function tick(): void {
    timer = null;
    try {
      check();
    } catch {
      // A walk that failed in a way not foreseen: the next check tries again.
    }
    if (running) schedule(now() - lastBusyAt < BUSY_TAIL_MS ? BUSY_INTERVAL_MS : REST_INTERVAL_MS);
  }

  function stop(): void {
    running = false;
    if (timer) clearTimeout(timer);
    timer = null;
    for (const w of live.values()) if (w.walk) finish(w.walk);
    if (looseWalk) finish(looseWalk);
    looseWalk = null;
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
      // Only a resting watch is woken: moving a busy one's check at every arrival would put it off for ever.
      if (!running || !timer || nextCheckAt <= now() + BUSY_INTERVAL_MS) return;
      clearTimeout(timer);
      schedule(BUSY_INTERVAL_MS);
    },
    stop,
  };
}
