/**
 * How much of the front one run's ctx.db may use. Its statements run one at a time, in the order they came, so a
 * run never holds more than one answer in the front; at most `maxWaiting` wait behind it, more are refused; and
 * they are paced: a run gets `statementsPerSec` statements and `bytesPerSec` of answers, after a burst of each.
 * Pacing delays the run's own statements and refuses nothing: a long-running agent that polls keeps working, only
 * slower. Without this, one run's 60 concurrent `messages.list` over a thread of 1 MB answers had the front read
 * ~0.5 GB at once: another user's /healthz waited 3.4 s and the front's RSS grew by 900 MiB
 * (tests/db-gate-amplification.test.ts).
 */
import type { SqlResultSet } from '@prisma/driver-adapter-utils';
import type { LiveRun } from '../runs/live-run.js';

export interface GateLimits {
  /** Statements of one run waiting behind the one executing; more are refused `too_many_waiting`. */
  maxWaiting: number;
  statementsPerSec: number;
  statementBurst: number;
  /** Bytes of answers (their rows' strings) per second, and the burst a run starts with. */
  bytesPerSec: number;
  byteBurst: number;
}

/**
 * 256 waiting: an honest agent may ask for each of its 100 threads at once (a waiting statement is the learned SQL
 * and at most 5 arguments: ~25 KiB at worst). A run starts with 200 statements and 32 MiB of answers at full speed (ctx.db pages its history 100 messages and
 * at most 1 MiB at a time), then 100 statements and 8 MiB a second.
 */
export const GATE_LIMITS: GateLimits = { maxWaiting: 256, statementsPerSec: 100, statementBurst: 200, bytesPerSec: 8 * 1024 * 1024, byteBurst: 32 * 1024 * 1024 };

interface RunShare {
  tail: Promise<void>;
  waiting: number;
  statements: number;
  bytes: number;
  at: number;
}

export interface GateAdmission {
  /**
   * 'too_many_waiting', or null: `work` then runs after the run's earlier statements, once the run's pace allows,
   * and the bytes it resolves with are charged to the run. `work` answers the worker itself and must not reject.
   */
  admit(run: LiveRun, work: () => Promise<number>): 'too_many_waiting' | null;
}

export interface GateClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

const realClock: GateClock = { now: () => performance.now(), sleep: (ms) => new Promise((r) => setTimeout(r, ms)) };

export function createGateAdmission(limits: GateLimits = GATE_LIMITS, clock: GateClock = realClock): GateAdmission {
  // Weakly held: a run's share goes with the run, whether or not its last statement ever came back.
  const shares = new WeakMap<LiveRun, RunShare>();

  function refill(s: RunShare): void {
    const now = clock.now();
    const seconds = (now - s.at) / 1000;
    s.at = now;
    s.statements = Math.min(limits.statementBurst, s.statements + seconds * limits.statementsPerSec);
    s.bytes = Math.min(limits.byteBurst, s.bytes + seconds * limits.bytesPerSec);
  }

  /** Waits until the run has a statement to spend and owes no bytes. */
  async function pace(s: RunShare): Promise<void> {
    for (;;) {
      refill(s);
      const waitS = Math.max((1 - s.statements) / limits.statementsPerSec, -s.bytes / limits.bytesPerSec);
      if (waitS <= 0) break;
      await clock.sleep(Math.ceil(waitS * 1000));
    }
    s.statements -= 1;
  }

  return {
    admit(run, work) {
      let share = shares.get(run);
      if (!share) shares.set(run, (share = { tail: Promise.resolve(), waiting: 0, statements: limits.statementBurst, bytes: limits.byteBurst, at: clock.now() }));
      if (share.waiting >= limits.maxWaiting) return 'too_many_waiting';
      share.waiting++;
      const s = share;
      s.tail = s.tail.then(async () => {
        await pace(s);
        s.waiting--;
        s.bytes -= await work().catch(() => 0);
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
