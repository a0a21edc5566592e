/** The named own properties of an object, as a new object: how a process's view of a configuration is taken. */
export function pick<T extends object, K extends keyof T>(from: T, keys: readonly K[]): Pick<T, K> {
  const out = {} as Pick<T, K>;
  for (const key of keys) out[key] = from[key];
  return out;
}

/**
 * true when A and B have the same fields, each assignable both ways: a list of names picked from one type,
 * checked against an interface declared elsewhere so that neither can change without the other.
 */
export type SameShape<A, B> = [A, keyof A] extends [B, keyof B] ? ([B, keyof B] extends [A, keyof A] ? true : false) : false;

/** Compiles only when its argument is true: `export type XMatch = Assert<SameShape<X, Y>>`. */
export type Assert<T extends true> = T;
