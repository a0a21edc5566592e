/**
 * The end of a workload: wait until the database has nothing queued or running, let every socket receive what
 * it still should, then have every client catch up from its cursor (the final pass), and take the history.
 */
import { readTransitions } from './audit.js';
import type { ClusterClient } from './client.js';
import type { History, StartRequest } from './history.js';
import { readDatabase, unfinishedRuns } from './read-database.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface SettleResult {
  /** How long the database took to have nothing queued or running (null: it never did in time). */
  settledMs: number | null;
  unfinished: number;
}

export async function settle(deps: { databaseUrl: string; clients: ClusterClient[]; timeoutMs: number; progress: (line: string) => void }): Promise<SettleResult> {
  const started = Date.now();
  const deadline = started + deps.timeoutMs;
  let unfinished = await unfinishedRuns(deps.databaseUrl);
  let lastReport = Date.now();
  while (unfinished > 0 && Date.now() < deadline) {
    if (Date.now() - lastReport > 5000) {
      deps.progress(`settling: ${unfinished} runs still queued or running`);
      lastReport = Date.now();
    }
    await sleep(250);
    unfinished = await unfinishedRuns(deps.databaseUrl);
  }
  const settledMs = unfinished === 0 ? Date.now() - started : null;
  // Live delivery first: each client waits for the terminal events of the runs it follows (bounded), before the
  // final pass asks for anything. What a socket lacks then is judged as not delivered.
  await Promise.all(deps.clients.map((c) => c.until(() => c.log.follows.every((id) => c.hasFinished(id)), 15_000)));
  // A duplicate or late event after a terminal one would arrive now.
  await sleep(500);
  await Promise.all(deps.clients.map((c) => c.catchUp(15_000)));
  await sleep(300);
  return { settledMs, unfinished };
}

/** The whole history, as plain data (a copy: nothing changes it afterwards). */
export async function takeHistory(databaseUrl: string, requests: StartRequest[], clients: ClusterClient[], withAudit: boolean): Promise<History> {
  const { runs, events } = await readDatabase(databaseUrl);
  const transitions = withAudit ? await readTransitions(databaseUrl) : null;
  return JSON.parse(JSON.stringify({ runs, events, transitions, requests, clients: clients.map((c) => c.log) })) as History;
}
