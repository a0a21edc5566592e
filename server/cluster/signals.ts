/**
 * Messages between the nodes of a cluster (over Redis: server/bus/redis/). Each is a hint that saves waiting,
 * never the only record: the database holds the truth, and every node also finds it out by itself (it claims
 * every PUMP_EVERY_MS, it reads the stops asked of its runs at each lease renewal).
 */
export interface ClusterSignals {
  /** Runs were queued or taken over: every node tries to claim. */
  wake(): void;
  /** Asks node `nodeId` to stop one of its runs (its durable flag is set already). */
  stopRun(nodeId: string, runId: string): void;
  onWake(handler: () => void): void;
  onStopRun(handler: (runId: string) => void): void;
}

/** A single node's: nobody else to tell. */
export const noSignals: ClusterSignals = {
  wake() {},
  stopRun() {},
  onWake() {},
  onStopRun() {},
};
