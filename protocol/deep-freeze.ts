/**
 * Deep freeze, for values one holder hands to many (the front's Config, a worker's shared settings and
 * built-in tools, a run's input): nobody downstream may change what the next one reads. Shared by every
 * process, so the front and the workers freeze the same way.
 */

/**
 * Freezes `value` and every object reachable through its own enumerable properties, then returns it. An
 * already frozen object is still walked (its members may not be); each object is visited once, so shared
 * and cyclic references are fine. Non-objects are returned as they are.
 */
export function deepFreeze<T>(value: T): T {
  const seen = new WeakSet<object>();
  const visit = (v: unknown): void => {
    if (v === null || typeof v !== 'object' || seen.has(v)) return;
    seen.add(v);
    Object.freeze(v);
    for (const member of Object.values(v)) visit(member);
  };
  visit(value);
  return value;
}
