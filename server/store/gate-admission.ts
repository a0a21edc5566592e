/**
 * How much of the front one run's ctx.db may use. Its statements run one at a time, in the order they came, so a
 * run never holds more than one answer in the front; at most `maxWaiting` wait behind it; and over the run's life
 * it gets `maxStatements` statements and `maxAnswerBytes` of answers. Without this, one run's 60 concurrent
 * `messages.list` over a thread of 1 MB answers had the front read ~0.5 GB at once: another user's /healthz
 * waited 3.4 s and the front's RSS grew by 900 MiB (tests/db-gate-amplification.test.ts).
 */
import type { SqlResultSet } from '@prisma/driver-adapter-utils';
import type { RefusalReason } from '../../protocol/db-messages.js';
import type { LiveRun } from '../runs/live-run.js';

export interface GateLimits {
  /** Statements of one run waiting behind the one executing; more are refused `too_many_waiting`. */
  maxWaiting: number;
  /** Statements one run may have executed over its life; more are refused `run_budget`. */
  maxStatements: number;
  /** Bytes of answers one run may have had over its life (its statements' rows); more are refused `run_budget`. */
  maxAnswerBytes: number;
}

/** ctx.db pages its history 100 messages at a time: 1,000 statements and 64 MiB are far beyond what a run reads. */
export const GATE_LIMITS: GateLimits = { maxWaiting: 16, maxStatements: 1000, maxAnswerBytes: 64 * 1024 * 1024 };

interface RunShare {
  tail: Promise<void>;
  waiting: number;
  statements: number;
  bytes: number;
}

export interface GateAdmission {
  /**
   * A refusal, or null: `work` then runs after the run's earlier statements, and the bytes it resolves with count
   * against the run's budget. `work` answers the worker itself and must not reject.
   */
  admit(run: LiveRun, work: () => Promise<number>): Extract<RefusalReason, 'too_many_waiting' | 'run_budget'> | null;
}

export function createGateAdmission(limits: GateLimits = GATE_LIMITS): GateAdmission {
  // Weakly held: a run's share goes with the run, whether or not its last statement ever came back.
  const shares = new WeakMap<LiveRun, RunShare>();
  return {
    admit(run, work) {
      let share = shares.get(run);
      if (!share) shares.set(run, (share = { tail: Promise.resolve(), waiting: 0, statements: 0, bytes: 0 }));
      if (share.statements >= limits.maxStatements || share.bytes >= limits.maxAnswerBytes) return 'run_budget';
      if (share.waiting >= limits.maxWaiting) return 'too_many_waiting';
      share.statements++;
      share.waiting++;
      const s = share;
      s.tail = s.tail.then(async () => {
        s.waiting--;
        s.bytes += await work().catch(() => 0);
      });
      return null;
    },
  };
}

/** About what an answer weighs in the front: its strings' lengths, 8 bytes for anything else. */
export function answerBytes(result: SqlResultSet | number): number {
  if (typeof result === 'number') return 8;
  let bytes = 0;
  for (const row of result.rows) for (const v of row) bytes += typeof v === 'string' ? v.length : 8;
  return bytes;
}
