/**
 * Readiness for load balancers and orchestrators: `/readyz` says whether this node should get traffic
 * now, and names what is wrong when not (liveness stays `/healthz`: the process answers at all).
 */
import { Router } from 'express';
import type { CellHandle } from '../../cells/cell-handle.js';

/** A database that does not answer within this long counts as unreachable: probes must not hang. */
const DB_PING_TIMEOUT_MS = 1000;

export interface Readiness {
  ready: boolean;
  checks: { database: string; cells: string; draining: boolean };
  /** The names of the failing checks, for people and scripts. */
  failing: string[];
}

export async function readiness(deps: { ping: () => Promise<void>; cells: () => CellHandle[]; draining: () => boolean }): Promise<Readiness> {
  let database = 'ok';
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      deps.ping(),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer in ${DB_PING_TIMEOUT_MS} ms`)), DB_PING_TIMEOUT_MS))),
    ]);
  } catch (err) {
    database = `unreachable: ${String((err as Error)?.message ?? err)}`;
  } finally {
    clearTimeout(timer);
  }
  // Serving slots keep their handle while a replacement starts, so their count is the configured CELLS.
  const serving = deps.cells().filter((c) => !c.quarantine);
  const ready = serving.filter((c) => c.state === 'ready').length;
  const draining = deps.draining();
  const failing = [
    ...(database === 'ok' ? [] : ['database']),
    ...(ready >= 1 ? [] : ['cells']),
    ...(draining ? ['draining'] : []),
  ];
  return { ready: failing.length === 0, checks: { database, cells: `${ready}/${serving.length} serving`, draining }, failing };
}

export function opsRoutes(deps: Parameters<typeof readiness>[0]): Router {
  const r = Router();
  r.get('/readyz', async (_req, res) => {
    const result = await readiness(deps);
    res.status(result.ready ? 200 : 503).json({ status: result.ready ? 'ready' : 'not_ready', checks: result.checks, failing: result.failing });
  });
  return r;
}
