/**
 * Cell supervision: forks the cells, routes only to cells that said `ready`, turns exits into causes,
 * hands the runs that were inside a dead cell to the run service, and starts a replacement with backoff.
 */
import { fork } from 'node:child_process';
import type { Logger } from '../logger.js';
import type { AgentInfo, CellConfig, CellToFront } from '../protocol/cell-messages.js';
import { CellHandle } from './cell-handle.js';
import { describeCellExit, type CellExit } from './exit-cause.js';

export interface SupervisorEvents {
  onMessage(cell: CellHandle, msg: CellToFront): void;
  /** A cell that held runs died: every one of them needs its terminal event. */
  onCellExit(cell: CellHandle, exit: CellExit, runIds: string[]): void;
  onCellReady(cell: CellHandle, restartMs: number | null): void;
}

export interface SupervisorOptions {
  cells: number;
  cellConfig: Omit<CellConfig, 'cellId'>;
  cellEntry: string;
  log: Logger;
  events: SupervisorEvents;
}

const STDERR_TAIL = 8192;
const MAX_BACKOFF_MS = 5000;
const STABLE_AFTER_MS = 30_000;

export function createCellSupervisor(opts: SupervisorOptions) {
  const { log, events } = opts;
  const slots: (CellHandle | null)[] = new Array(opts.cells).fill(null);
  const generation = new Array(opts.cells).fill(0);
  const failures = new Array(opts.cells).fill(0);
  let stopping = false;
  let lastAgents: AgentInfo[] = [];

  function spawn(slot: number, diedAt: number | null): Promise<CellHandle> {
    generation[slot]++;
    const id = `cell${slot + 1}-g${generation[slot]}`;
    // A --max-old-space-size in NODE_OPTIONS would silently override every worker's heap budget (nodejs/node#43991).
    const env = { ...process.env };
    if (env.NODE_OPTIONS?.includes('max-old-space-size')) delete env.NODE_OPTIONS;
    const child = fork(opts.cellEntry, [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'pipe', 'ipc'], execArgv: [], env });
    const cell = new CellHandle(id, slot, child, opts.cellConfig.threads);
    slots[slot] = cell;
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      process.stderr.write(chunk);
      cell.stderrTail = (cell.stderrTail + chunk).slice(-STDERR_TAIL);
    });

    return new Promise<CellHandle>((resolve, reject) => {
      child.on('message', (msg: CellToFront) => {
        if (msg.type === 'ready') {
          cell.state = 'ready';
          cell.agents = msg.agents;
          lastAgents = msg.agents;
          log.info({ cell: id, pid: child.pid }, 'cell ready');
          events.onCellReady(cell, diedAt === null ? null : Date.now() - diedAt);
          resolve(cell);
        } else if (msg.type === 'init_failed') {
          reject(new Error(`cell ${id} failed to start: ${msg.error.message}`));
        } else {
          events.onMessage(cell, msg);
        }
      });
      child.on('error', (err) => log.error({ cell: id, err: err.message }, 'cell process error'));
      child.on('exit', (code, signal) => {
        const wasReady = cell.state === 'ready';
        cell.state = 'dead';
        reject(new Error(`cell ${id} exited before it was ready (code ${code}, signal ${signal})`));
        // Give stderr a moment to deliver the fatal message that names the cause.
        setTimeout(() => {
          const exit = describeCellExit(code, signal, cell.stderrTail);
          const runIds = [...cell.runs];
          cell.runs.clear();
          if (!stopping) log.error({ cell: id, code, signal, cause: exit.cause, runs: runIds.length }, 'cell died');
          events.onCellExit(cell, exit, runIds);
          if (stopping) return;
          if (wasReady && Date.now() - cell.spawnedAt > STABLE_AFTER_MS) failures[slot] = 0;
          const delay = failures[slot] === 0 ? 0 : Math.min(MAX_BACKOFF_MS, 100 * 2 ** failures[slot]);
          failures[slot]++;
          setTimeout(() => {
            if (!stopping) spawn(slot, Date.now() - delay).catch((err) => log.error({ err: err.message }, 'cell restart failed'));
          }, delay).unref();
        }, 50);
      });
      child.send({ type: 'init', config: { ...opts.cellConfig, cellId: id } });
    });
  }

  return {
    /** Starts every cell; rejects with the first cell's start-up error (a broken agent module, say). */
    async start(): Promise<void> {
      await Promise.all(slots.map((_, slot) => spawn(slot, null)));
    },
    /** The ready cell with the most free slots, or null when all are full. */
    pick(): CellHandle | null {
      let best: CellHandle | null = null;
      for (const cell of slots) if (cell && cell.freeSlots > 0 && (!best || cell.freeSlots > best.freeSlots)) best = cell;
      return best;
    },
    cells(): CellHandle[] {
      return slots.filter((c): c is CellHandle => c !== null);
    },
    agents(): AgentInfo[] {
      return lastAgents;
    },
    async stop(timeoutMs: number): Promise<void> {
      stopping = true;
      await Promise.all(
        this.cells().map(
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
