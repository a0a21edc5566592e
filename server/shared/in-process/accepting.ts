/**
 * Requests being accepted right now, by idempotency key, in this process: a duplicate that arrives while the
 * first is still being accepted waits for the first one's answer instead of accepting a second run.
 */
import type { Accepting } from '../shared-state.js';

export function createAccepting(): Accepting {
  const pending = new Map<string, Promise<unknown>>();
  return {
    async once<T>(key: string, accept: () => Promise<T>): Promise<{ value: T; duplicate: boolean }> {
      // Looked up and claimed in the same turn as the call: two requests can never both pass.
      const first = pending.get(key) as Promise<T> | undefined;
      if (first) return { value: await first, duplicate: true };
      const attempt = accept();
      pending.set(key, attempt);
      try {
        return { value: await attempt, duplicate: false };
      } finally {
        pending.delete(key);
      }
    },
  };
}
