/**
 * The whole check: every invariant over one history, as pure functions of it (no I/O), so a test can hand it
 * a history with any violation and see it named.
 */
import type { History, Limits } from '../history.js';
import { checkFifo } from './fifo.js';
import { checkIdempotency } from './idempotency.js';
import { checkOccupancyOf } from './occupancy.js';
import { checkAcknowledged, checkRunLogs } from './run-log.js';
import { checkStreams, type StreamStats } from './streams.js';
import type { Violation } from './violation.js';

export interface CheckResult {
  violations: Violation[];
  counts: {
    runs: number;
    events: number;
    transitions: number | null;
    requests: number;
    acknowledged: number;
    refused: number;
    lost: number;
    clients: number;
    sockets: number;
  } & StreamStats;
  /** Checks that could not run on this history, and why. */
  skipped: string[];
}

export function checkHistory(h: History, limits: Limits): CheckResult {
  const streams = checkStreams(h);
  const violations = [...checkAcknowledged(h), ...checkRunLogs(h, limits), ...checkOccupancyOf(h, limits), ...(limits.queueInDatabase ? checkFifo(h) : []), ...checkIdempotency(h), ...streams.violations];
  const outcome = (kind: string) => h.requests.filter((r) => r.outcome.kind === kind).length;
  return {
    violations,
    counts: {
      runs: h.runs.length,
      events: h.events.length,
      transitions: h.transitions?.length ?? null,
      requests: h.requests.length,
      acknowledged: outcome('accepted'),
      refused: outcome('refused'),
      lost: outcome('lost'),
      clients: h.clients.length,
      sockets: h.clients.reduce((n, c) => n + c.sockets.length, 0),
      ...streams.stats,
    },
    skipped: !h.transitions
      ? ['caps, conversations, FIFO and finished rows never changing: no audit of run rows was recorded']
      : limits.queueInDatabase
        ? []
        : ['caps, conversations and FIFO: a single node keeps its queue in memory and its rows lag behind it (Limits.queueInDatabase)'],
  };
}
