/**
 * PLACEHOLDER (helper "realtime"): the real file is written by another helper and replaces this one at the
 * merge. Only here so that index.ts compiles; it keeps the one export index.ts imports.
 */
import type { InFlight } from '../shared-state.js';

export function createInFlight(): InFlight {
  const pending = new Map<string, Promise<unknown>>();
  return {
    async once<T>(key: string, accept: () => Promise<T>) {
      const first = pending.get(key) as Promise<T> | undefined;
      if (first) return { value: await first, duplicate: true };
      const p = accept();
      pending.set(key, p);
      try {
        return { value: await p, duplicate: false };
      } finally {
        pending.delete(key);
      }
    },
  };
}
