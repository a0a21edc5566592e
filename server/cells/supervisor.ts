/**
 * Cell supervision: forks the cells, routes only to cells that said `ready`, turns exits into causes,
 * hands the runs that were inside a dead cell to the run service, and starts a replacement with backoff.
 *
 * Two kinds of cell: serving cells (CELLS of them, always replaced when they die) and quarantine cells,
 * started on demand to run the suspects of a cell death one per cell (QUARANTINE_CELLS of them at most), and
 * retired when idle; one more quarantine cell runs the runs of users whose run killed a cell (server/runs/
 * cell-killers.ts), one at a time, so those users never hold a cell a suspect waits for.
 */
import { fork } from 'node:child_process';
import type { SupervisorSettings } from '../config-views.js';
import type { Logger } from '../logger.js';
import type { AgentInfo, CellConfig, CellToFront } from '../../protocol/cell-messages.js';
import { CellHandle, cellId } from './cell-handle.js';
import { cellLaunch, type CellSandboxOptions } from './cell-sandbox.js';
import { createRunScratch } from './run-scratch.js';
import { readCellOsThreads } from './cpu-governor.js';
import { describeCellExit, type CellExit } from './exit-cause.js';
import { pickCell } from './pick-cell.js';

export interface SupervisorEvents {
  onMessage(cell: CellHandle, msg: CellToFront): void;
  /** A cell that held runs died: every one of them needs its terminal event. */
  onCellExit(cell: CellHandle, exit: CellExit, runIds: string[]): void;
  onCellReady(cell: CellHandle, restartMs: number | null): void;
  /** An idle serving cell that had grown past CELL_RECYCLE_RSS_RATIO × its baseline was replaced. */
  onCellRejuvenated(cell: CellHandle): void;
}

export interface SupervisorOptions {
  /**
   * How many serving cells (CELLS) and quarantine cells at most (QUARANTINE_CELLS); an idle serving cell whose
   * RSS exceeds cellRecycleRssRatio × its warm baseline is replaced (0: never); a ready cell that sends nothing
   * for cellSilenceTimeoutMs (it reports stats every second) is killed as wedged.
   */
  settings: SupervisorSettings;
  cellConfig: Omit<CellConfig, 'cellId' | 'scratchDir'>;
  sandbox: CellSandboxOptions;
  cellEntry: string;
  log: Logger;
}

const STDERR_TAIL = 8192;
const MAX_BACKOFF_MS = 5000;
const STABLE_AFTER_MS = 30_000;
const QUARANTINE_IDLE_MS = 30_000;
const BASELINE_AFTER_MS = 5_000;
const REJUVENATE_IDLE_MS = 5_000;
const WATCH_MS = 1000;
/** How long a dead cell's channel may take to deliver its last messages before the death is judged without them. */
const DRAIN_MAX_MS = 2000;
/** How long after a cell's exit its stderr may still be delivering the fatal message that names the cause. */
const STDERR_WAIT_MS = 50;

export function createCellSupervisor(opts: SupervisorOptions) {
  const { log, settings } = opts;
  /** Who hears about cells: given to start(), so the supervisor can be built before its listener (the run service). */
  let events: SupervisorEvents | null = null;
  /**
   * What cells said before start() named the listener: the cells are launched first thing (launch(), while the
   * front loads its modules and migrates), and what they report meanwhile is told to the listener in order.
   */
  const early: ((listener: SupervisorEvents) => void)[] = [];
  const tell = (event: (listener: SupervisorEvents) => void) => (events ? event(events) : early.push(event));
  /** The serving cells' first start, from launch(): start() awaits it. */
  let launched: Promise<unknown> | null = null;
  // Slots 0..cells-1 serve runs; the slots after them hold quarantine cells while they exist: the suspects'
  // (QUARANTINE_CELLS), then the cell killers' one.
  const killerSlot = settings.cells + settings.quarantineCells;
  const total = killerSlot + 1;
  const slots: (CellHandle | null)[] = new Array(total).fill(null);
  const generation = new Array(total).fill(0);
  const failures = new Array(total).fill(0);
  const isQuarantine = (slot: number) => slot >= settings.cells;
  /** A quarantine cell for suspects (not the cell killers' one). */
  const forSuspects = (c: CellHandle | null): c is CellHandle => !!c && c.quarantine && c.slot !== killerSlot;
  let stopping = false;
  let lastAgents: AgentInfo[] = [];
  /**
   * Quarantine cells start when needed, at the pump: one that died before it was ready may start again only after
   * this moment (the same backoff as serving cells'), or one that cannot start (an agent module whose top-level code
   * kills it, as only a quarantine cell's folder name can tell) was started again at every pump, 4 times a second.
   */
  const quarantineNotBefore = new Array(total).fill(0);
  const mayStartQuarantine = (slot: number) => slots[slot] === null && Date.now() >= quarantineNotBefore[slot];
  /** Replacements waiting out their backoff: stop() cancels them. */
  const pendingRestarts = new Set<NodeJS.Timeout>();

  function spawn(slot: number, diedAt: number | null): Promise<CellHandle> {
    generation[slot]++;
    const quarantine = isQuarantine(slot);
    const slotName = quarantine ? `quarantine${slot - settings.cells + 1}` : `cell${slot + 1}`;
    const id = cellId(slotName, generation[slot]);
    // An allow-listed environment (no secrets; no NODE_OPTIONS, whose --max-old-space-size would silently
    // override every worker's heap budget: nodejs/node#43991), the permission model, and an OS user of its own.
    const launch = cellLaunch(opts.sandbox, id, slot, process.env);
    const child = fork(opts.cellEntry, [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'pipe', 'ipc'], execArgv: launch.execArgv, env: launch.env, uid: launch.uid, gid: launch.gid, cwd: launch.scratchDir });
    const owner = launch.uid === undefined ? null : { uid: launch.uid, gid: launch.gid! };
    const cell = new CellHandle(slotName, generation[slot], slot, child, quarantine ? 1 : opts.cellConfig.workersPerCell, quarantine, createRunScratch(launch.scratchDir, owner));
    slots[slot] = cell;
    // With 'cell died' (restart_in_ms), shows the backoff a slot that keeps dying actually waited.
    log.info({ cell: id, pid: child.pid }, 'cell starting');
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      process.stderr.write(chunk);
      cell.stderrTail = (cell.stderrTail + chunk).slice(-STDERR_TAIL);
    });

    // A quarantine cell's worker serves one run: what a run leaves behind (a callback that outlives it) ends with its
    // worker, so the next suspect there cannot be named for it. Lingering workers are weighed in serving cells only
    // (cell-death.ts); here, where each run is alone by design, they are not kept.
    const config = quarantine ? { ...opts.cellConfig, workersPerCell: 1, quarantine: true, maxRunsPerWorker: 1 } : opts.cellConfig;
    return new Promise<CellHandle>((resolve, reject) => {
      const receive = (msg: CellToFront) => {
        if (msg.type === 'booting') {
          // The cell starts its pool only on init, so every OS thread it has now is Node's own: note them, then init.
          cell.systemOsThreads = new Set(child.pid === undefined ? [] : (readCellOsThreads(child.pid)?.keys() ?? []));
          cell.send({ type: 'init', config: { ...config, cellId: id, scratchDir: launch.scratchDir } });
        } else if (msg.type === 'ready') {
          cell.state = 'ready';
          cell.readyAt = Date.now();
          cell.agents = msg.agents;
          lastAgents = msg.agents;
          log.info({ cell: id, pid: child.pid }, 'cell ready');
          const restartMs = diedAt === null ? null : Date.now() - diedAt;
          tell((l) => l.onCellReady(cell, restartMs));
          resolve(cell);
        } else if (msg.type === 'init_failed') {
          reject(new Error(`cell ${id} failed to start: ${msg.error.message}`));
        } else if (msg.type === 'process_metrics') {
          cell.processMetrics = msg.metrics;
        } else {
          if (msg.type === 'stats' && cell.baselineRssBytes === null && cell.readyAt !== null && Date.now() - cell.readyAt >= BASELINE_AFTER_MS) {
            cell.baselineRssBytes = msg.stats.rssBytes;
            log.info({ cell: id, baseline_rss_bytes: cell.baselineRssBytes }, 'cell memory baseline noted');
          }
          tell((l) => l.onMessage(cell, msg));
        }
      };
      child.on('message', (received: CellToFront[]) => {
        cell.lastHeardAt = Date.now();
        for (const msg of received) receive(msg);
      });
      child.on('error', (err) => log.error({ cell: id, err: err.message }, 'cell process error'));
      child.on('exit', (code, signal) => {
        const wasReady = cell.state === 'ready';
        const retired = cell.state === 'stopping';
        const rejuvenated = cell.rejuvenating;
        cell.state = 'dead';
        cell.scratch.removeAll();
        reject(new Error(`cell ${id} exited before it was ready (code ${code}, signal ${signal})`));
        // A serving cell that died is replaced at once, or after a backoff that grows while it keeps dying young;
        // the replacement does not wait for the death to be described below.
        const restarts = !stopping && !rejuvenated && !quarantine;
        const diedAt = Date.now();
        if (restarts && wasReady && Date.now() - cell.spawnedAt > STABLE_AFTER_MS) failures[slot] = 0;
        // Retired while idle, or dead once ready (a culprit found): it had started. Otherwise it never did.
        if (quarantine && !stopping) failures[slot] = !wasReady && !retired ? failures[slot] + 1 : 0;
        const delay = failures[slot] === 0 ? 0 : Math.min(MAX_BACKOFF_MS, 100 * 2 ** failures[slot]);
        if (!stopping && rejuvenated) {
          spawn(slot, null).catch((err) => log.error({ err: err.message }, 'cell restart failed'));
        } else if (restarts) {
          failures[slot]++;
            const replace = () => spawn(slot, diedAt).catch((err) => log.error({ err: err.message }, 'cell restart failed'));
          if (delay === 0) replace();
          else {
            const restart = setTimeout(() => {
              pendingRestarts.delete(restart);
              if (!stopping) replace();
            }, delay);
            restart.unref();
            pendingRestarts.add(restart);
          }
        }
        // Give stderr a moment to deliver the fatal message that names the cause, and the channel every message the
        // cell wrote before it died (the runs it reported started: the others never ran agent code).
        afterDrain(cell, () => {
          const exit = describeCellExit(code, signal, cell.stderrTail, cell.killedForDescriptors);
          const runIds = [...cell.runs.keys()];
          cell.runs.clear();
          if (!stopping && !retired) log.error({ cell: id, code, signal, cause: exit.cause, runs: runIds.length, died_at: new Date(diedAt).toISOString(), ...(restarts ? { restart_in_ms: delay } : {}) }, 'cell died');
          // A cell retired while idle held no runs and did not die: nothing to settle, no death to count.
          if (!retired || runIds.length > 0) tell((l) => l.onCellExit(cell, exit, runIds));
          // Quarantine cells are started again only when needed, after a backoff from here if this one never started.
          if (quarantine && slots[slot] === cell) {
            slots[slot] = null;
            quarantineNotBefore[slot] = failures[slot] === 0 ? 0 : Date.now() + Math.min(MAX_BACKOFF_MS, 100 * 2 ** failures[slot]);
          }
        });
      });
    });
  }

  // Quarantine cells that sat idle for a while are retired: they cost a process each. A serving cell that,
  // idle, holds far more memory than when it was fresh (allocator fragmentation after workers were
  // killed mid-allocation) is replaced while nothing runs in it, so memory returns to its level.
  let lastWatchAt = Date.now();
  let watchTimer: NodeJS.Timeout | null = null;
  function watch(): void {
    const now = Date.now();
    // If the front itself was stalled, the cells' messages are still unread in its queue: judge no silence now.
    const frontStalled = now - lastWatchAt > WATCH_MS * 4;
    lastWatchAt = now;
    for (const cell of slots) {
      if (cell && !frontStalled && cell.state === 'ready' && now - cell.lastHeardAt > settings.cellSilenceTimeoutMs) {
        // A cell that stopped talking (stopped by a signal, its main thread blocked) would hold its runs forever
        // and keep being picked: kill it. It names no culprit, so the runs inside run again in quarantine.
        log.error({ cell: cell.id, silent_ms: now - cell.lastHeardAt, runs: cell.runs.size }, 'cell silent; killing it');
        cell.killAsWedged();
      }
    }
    for (const cell of slots) {
      if (!cell || cell.state !== 'ready' || cell.runs.size > 0) continue;
      if (cell.quarantine && now - cell.lastBusyAt > QUARANTINE_IDLE_MS) {
        cell.state = 'stopping';
        cell.send({ type: 'shutdown' });
      } else if (
        !cell.quarantine &&
        settings.cellRecycleRssRatio > 0 &&
        cell.baselineRssBytes !== null &&
        cell.stats !== null &&
        now - cell.lastBusyAt > REJUVENATE_IDLE_MS &&
        cell.stats.rssBytes > cell.baselineRssBytes * settings.cellRecycleRssRatio
      ) {
        log.info({ cell: cell.id, rss_bytes: cell.stats.rssBytes, baseline_rss_bytes: cell.baselineRssBytes }, 'idle cell grew past its baseline; replacing it');
        cell.state = 'stopping';
        cell.rejuvenating = true;
        tell((l) => l.onCellRejuvenated(cell));
        cell.send({ type: 'shutdown' });
      }
    }
  }

  function launchServing(): Promise<unknown> {
    if (!launched) {
      launched = Promise.all(slots.slice(0, settings.cells).map((_, slot) => spawn(slot, null)));
      // Its failure is start()'s to report; until then it must not count as unhandled.
      launched.catch(() => undefined);
    }
    return launched;
  }

  function cells(): CellHandle[] {
    return slots.filter((c): c is CellHandle => c !== null);
  }

  return {
    /**
     * Starts every serving cell now, before anyone listens (a cell takes a second or two to warm its threads,
     * the front as long to load its modules and migrate: they overlap). What the cells report meanwhile waits
     * for start(). Called again it does nothing more; start() launches if nobody did.
     */
    launch: launchServing,
    /**
     * Starts the watch (silent cells, idle quarantine cells, grown cells), names the listener (telling it what
     * the cells said since launch()) and waits for every serving cell to be ready; rejects with the first cell's
     * start-up error (a broken agent module, say). stop() ends both.
     */
    async start(listener: SupervisorEvents): Promise<void> {
      events = listener;
      for (const event of early.splice(0)) event(listener);
      if (!watchTimer) {
        lastWatchAt = Date.now();
        watchTimer = setInterval(watch, WATCH_MS);
        watchTimer.unref();
      }
      await launchServing();
    },
    /** The ready serving cell for a run (of `userId`: where its worker is idle first), or null when all are full: pick-cell.ts. */
    pick(userId?: string): CellHandle | null {
      // With THREAD_REUSE=any every idle worker serves every user: only free slots matter.
      return pickCell(slots, opts.cellConfig.workerReuse === 'same_user' ? userId : undefined);
    },
    /**
     * A ready, empty quarantine cell for the next suspect, or null. `waiting` suspects want one cell
     * each: more quarantine cells are started (up to the limit) while fewer are starting.
     */
    pickQuarantine(waiting: number): CellHandle | null {
      const ready = slots.find((c) => forSuspects(c) && c.freeSlots > 0) ?? null;
      if (ready || stopping) return ready;
      const starting = slots.filter((c) => forSuspects(c) && c.state === 'starting').length;
      for (let slot = settings.cells, more = waiting - starting; slot < killerSlot && more > 0; slot++) {
        if (mayStartQuarantine(slot)) {
          spawn(slot, null).catch((err) => log.error({ err: err.message }, 'quarantine cell failed to start'));
          more--;
        }
      }
      return null;
    },
    /** The cell killers' quarantine cell if it is ready and empty, or null (it is started if it does not exist). */
    pickKillerCell(): CellHandle | null {
      const cell = slots[killerSlot];
      if (cell) return cell.freeSlots > 0 ? cell : null;
      if (!stopping && mayStartQuarantine(killerSlot)) spawn(killerSlot, null).catch((err) => log.error({ err: err.message }, 'quarantine cell failed to start'));
      return null;
    },
    cells,
    agents(): AgentInfo[] {
      return lastAgents;
    },
    async stop(timeoutMs: number): Promise<void> {
      stopping = true;
      if (watchTimer) clearInterval(watchTimer);
      watchTimer = null;
      for (const restart of pendingRestarts) clearTimeout(restart);
      pendingRestarts.clear();
      await Promise.all(
        cells().map(
          (cell) =>
            new Promise<void>((resolve) => {
              if (cell.child.exitCode !== null || cell.child.signalCode !== null) return resolve();
              cell.state = 'stopping';
              const timer = setTimeout(() => cell.kill('SIGKILL'), timeoutMs);
              cell.child.once('exit', () => {
                clearTimeout(timer);
                resolve();
              });
              cell.send({ type: 'shutdown' });
            }),
        ),
      );
    },
  };
}

export type CellSupervisor = ReturnType<typeof createCellSupervisor>;

/**
 * Calls `then` once a dead cell's channel has been read to its end (or DRAIN_MAX_MS passed: cell.channelDrained
 * says which), and, if a run had started inside, at least STDERR_WAIT_MS after the exit: the fatal message on
 * stderr names the cause a culprit fails with. Runs that never started cannot be culprits: they go elsewhere at once.
 */
function afterDrain(cell: CellHandle, then: () => void): void {
  const exitedAt = Date.now();
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    clearTimeout(cap);
    cell.channelDrained = !cell.child.connected;
    const anyStarted = [...cell.runs.values()].some((startedAt) => startedAt !== null);
    const wait = cell.channelDrained && !anyStarted ? 0 : STDERR_WAIT_MS - (Date.now() - exitedAt);
    if (wait > 0) setTimeout(then, wait);
    else then();
  };
  const cap = setTimeout(finish, DRAIN_MAX_MS);
  if (!cell.child.connected) finish();
  else cell.child.once('disconnect', finish);
}
