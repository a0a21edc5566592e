/**
 * The messages between nodes as the run service uses them (server/runs/shared-runs.ts), over the node
 * messages (server/bus/node-messages.ts: Redis pub/sub with several nodes, a direct call on one). Each is a hint
 * that saves waiting, never the only record: the database holds the truth, and every node also finds it out by
 * itself (it claims every PUMP_EVERY_MS, it reads the stops asked of its runs at each lease renewal).
 */
import type { NodeMessages } from '../bus/node-messages.js';
import type { Logger } from '../logger.js';

export interface ClusterSignals {
  /** Runs were queued or taken over: every node tries to claim. */
  wake(): void;
  /** Asks node `nodeId` to stop one of its runs (its durable flag is set already). */
  stopRun(nodeId: string, userId: string, runId: string): void;
  /** A node died and its runs were taken over: its subscribers' events may be missing. */
  nodeDied(nodeId: string): void;
  /** This node put a user in quarantine for killing cells (server/runs/cell-killers.ts): the others do too. */
  cellKiller(userId: string): void;
  onWake(handler: () => void): void;
  onStopRun(handler: (runId: string) => void): void;
  onCellKiller(handler: (userId: string) => void): void;
}

/** Wake-ups are coalesced: a burst of accepts sends one per WAKE_EVERY_MS (the first at once, the last at the end). */
const WAKE_EVERY_MS = 20;

export function signalsOver(messages: NodeMessages, deps: { onNodeDied: () => void; log?: Pick<Logger, 'debug'> }): ClusterSignals {
  const wakeHandlers: (() => void)[] = [];
  const stopHandlers: ((runId: string) => void)[] = [];
  const killerHandlers: ((userId: string) => void)[] = [];
  let lastWake = 0;
  let trailing: NodeJS.Timeout | null = null;
  const ignore = () => undefined;

  messages.onMessage((m) => {
    if (m.type === 'wake') wakeHandlers.forEach((h) => h());
    else if (m.type === 'cancel_run') stopHandlers.forEach((h) => h(m.run_id));
    else if (m.type === 'node_died') deps.onNodeDied();
    else if (m.type === 'cell_killer') killerHandlers.forEach((h) => h(m.user_id));
  });
  // Messages may have been missed: claim now (the stops asked are read again at the next renewal).
  messages.onGap(() => wakeHandlers.forEach((h) => h()));

  function sendWake(): void {
    lastWake = Date.now();
    messages.broadcast({ type: 'wake' }).catch(ignore);
  }

  return {
    wake() {
      const since = Date.now() - lastWake;
      if (since >= WAKE_EVERY_MS) return sendWake();
      trailing ??= setTimeout(() => {
        trailing = null;
        sendWake();
      }, WAKE_EVERY_MS - since);
      trailing.unref();
    },
    stopRun(nodeId, userId, runId) {
      messages.send(nodeId, { type: 'cancel_run', run_id: runId, user_id: userId }).catch(ignore);
    },
    nodeDied(nodeId) {
      messages.broadcast({ type: 'node_died', node_id: nodeId }).catch(ignore);
      deps.onNodeDied();
    },
    cellKiller(userId) {
      messages.broadcast({ type: 'cell_killer', user_id: userId }).catch(ignore);
    },
    onWake(handler) {
      wakeHandlers.push(handler);
    },
    onStopRun(handler) {
      stopHandlers.push(handler);
    },
    onCellKiller(handler) {
      killerHandlers.push(handler);
    },
  };
}
