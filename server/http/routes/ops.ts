/**
 * Readiness for load balancers and orchestrators: `/readyz` says whether this node should get traffic
 * now, and names what is wrong when not (liveness stays `/healthz`: the process answers at all).
 *
 * Redis (several nodes) is reported, and named in `degraded` when it does not answer, but never makes a node
 * unready: every node shares the one Redis, so an outage would take every node out of the load balancer at once,
 * while without Redis a node still accepts, runs and serves runs over HTTP (only new sockets and tickets are
 * refused, REDIS_UNAVAILABLE, and live delivery waits for the replay). The AtollRedisUnreachable alert covers it.
 *
 * Why a check fails is for operators (the same access as /metrics): a driver's error names hosts, ports, database
 * and role names. Anyone else reads `unreachable` alone; /readyz needs no token, since load balancers ask it.
 */
import { Router, type Request } from 'express';
import type { CellHandle } from '../../cells/cell-handle.js';
import { messageOf } from '../../../protocol/errors.js';

/** A database or Redis that does not answer within this long counts as unreachable: probes must not hang. */
const PING_TIMEOUT_MS = 1000;

export interface Readiness {
  ready: boolean;
  /** `redis` only on a node of several (REDIS_URL). */
  checks: { database: string; cells: string; draining: boolean; redis?: string };
  /** The names of the failing checks, for people and scripts. */
  failing: string[];
  /** The names of checks that fail without making the node unready (see above). */
  degraded: string[];
}

export interface ReadinessDeps {
  ping: () => Promise<void>;
  cells: () => CellHandle[];
  draining: () => boolean;
  /** Several nodes: resolves when Redis answers, rejects saying why not. */
  pingRedis?: () => Promise<void>;
}

/** 'ok', or 'unreachable: <why>' when `ping` fails or does not answer within PING_TIMEOUT_MS. */
async function answers(ping: () => Promise<void>): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([ping(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer in ${PING_TIMEOUT_MS} ms`)), PING_TIMEOUT_MS)))]);
    return 'ok';
  } catch (err) {
    // On one line: a Prisma error's message starts with a line break and spans several.
    return `unreachable: ${messageOf(err).replace(/\s+/g, ' ').trim()}`;
  } finally {
    clearTimeout(timer);
  }
}

export async function readiness(deps: ReadinessDeps): Promise<Readiness> {
  const [database, redis] = await Promise.all([answers(deps.ping), deps.pingRedis ? answers(deps.pingRedis) : undefined]);
  // Serving slots keep their handle while a replacement starts, so their count is the configured CELLS.
  const serving = deps.cells().filter((c) => !c.quarantine);
  const ready = serving.filter((c) => c.state === 'ready').length;
  const draining = deps.draining();
  const failing = [
    ...(database === 'ok' ? [] : ['database']),
    ...(ready >= 1 ? [] : ['cells']),
    ...(draining ? ['draining'] : []),
  ];
  return {
    ready: failing.length === 0,
    checks: { database, cells: `${ready}/${serving.length} serving`, draining, ...(redis === undefined ? {} : { redis }) },
    failing,
    degraded: redis === undefined || redis === 'ok' ? [] : ['redis'],
  };
}

/** `unreachable: <why>` → `unreachable`. */
function withoutWhy(checks: Readiness['checks']): Readiness['checks'] {
  const bare = (check: string) => check.replace(/^unreachable: .*$/s, 'unreachable');
  return { ...checks, database: bare(checks.database), ...(checks.redis === undefined ? {} : { redis: bare(checks.redis) }) };
}

export interface OpsDeps extends ReadinessDeps {
  /** Whether this request may read why a check fails (METRICS_TOKEN's holder, or anyone when it is unset). */
  operator: (req: Request) => boolean;
}

export function opsRoutes(deps: OpsDeps): Router {
  const r = Router();
  r.get('/readyz', async (req, res) => {
    const result = await readiness(deps);
    const checks = deps.operator(req) ? result.checks : withoutWhy(result.checks);
    res.status(result.ready ? 200 : 503).json({ status: result.ready ? 'ready' : 'not_ready', checks, failing: result.failing, degraded: result.degraded });
  });
  return r;
}
