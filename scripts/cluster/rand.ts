/**
 * A seeded random source (pure-rand's xoroshiro128+, the generator fast-check uses): the same seed gives the same
 * plan, so a failing run can be replayed with --seed.
 */
import { unsafeUniformIntDistribution, xoroshiro128plus, type RandomGenerator } from 'pure-rand';

export class Rand {
  private readonly rng: RandomGenerator;

  constructor(seed: number) {
    this.rng = xoroshiro128plus(seed);
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return unsafeUniformIntDistribution(min, max, this.rng);
  }

  /** True with probability p (to 1e-6). */
  chance(p: number): boolean {
    return this.int(0, 999_999) < p * 1_000_000;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from nothing');
    return items[this.int(0, items.length - 1)];
  }

  /** A fresh generator for a separate stream of choices, derived from this one. */
  fork(): Rand {
    return new Rand(this.int(0, 0x7fffffff));
  }
}

/** A seed for a run that was not given one. */
export function randomSeed(): number {
  return Math.floor(Math.random() * 0x7fffffff);
}
