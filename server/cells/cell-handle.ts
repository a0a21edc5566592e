/** The front's handle on one cell process: its state, the runs inside it, and a typed send. */
import type { ChildProcess } from 'node:child_process';
import type { AgentInfo, CellStats, FrontToCell } from '../protocol/cell-messages.js';

export type CellState = 'starting' | 'ready' | 'stopping' | 'dead';

export class CellHandle {
  state: CellState = 'starting';
  agents: AgentInfo[] = [];
  stats: CellStats | null = null;
  /** Runs assigned to this cell and not yet finished. */
  readonly runs = new Set<string>();
  stderrTail = '';
  readonly spawnedAt = Date.now();

  constructor(
    readonly id: string,
    readonly slot: number,
    readonly child: ChildProcess,
    readonly capacity: number,
  ) {}

  get freeSlots(): number {
    return this.state === 'ready' ? this.capacity - this.runs.size : 0;
  }

  send(msg: FrontToCell): void {
    if (this.child.connected) this.child.send(msg);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }
}
