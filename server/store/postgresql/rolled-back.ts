/**
 * A transaction PostgreSQL rolled back for a reason of the moment rather than of its statements: a deadlock with
 * another transaction (40P01: two nodes' group commits touching the same conversations in another order, a
 * takeover, a stop) or a serialization failure (40001). The server answered, so nothing of it committed, and the
 * same transaction may simply be sent again; the application is expected to (PostgreSQL's manual, "Serialization
 * Failure Handling"). Without it, a group commit's acknowledged events would fail with the deadlock and be lost.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { isServerAnswer } from './unavailable.js';

const ROLLED_BACK = new Set(['40001', '40P01']);

/** How many times in all a transaction is sent while the database rolls it back so. */
const TRIES = 5;

export function isRolledBack(err: unknown): boolean {
  return isServerAnswer(err) && ROLLED_BACK.has((err as { code: string }).code);
}

/**
 * `attempt`'s answer, sending it again (after a short pause, random so two rolled-back transactions do not meet
 * again at once) while the database rolls it back for a deadlock or a serialization failure. `causeOf` finds the
 * database's answer inside what `attempt` throws (a TransactionFailed wraps it).
 */
export async function retryRolledBack<T>(attempt: () => Promise<T>, causeOf: (err: unknown) => unknown = (err) => err): Promise<T> {
  for (let tried = 1; ; tried++) {
    try {
      return await attempt();
    } catch (err) {
      if (tried >= TRIES || !isRolledBack(causeOf(err))) throw err;
      await sleep(Math.round(5 * tried + Math.random() * 20 * tried));
    }
  }
}
