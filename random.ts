/**
 * Seeded random numbers for everything that must replay identically (the traffic simulator,
 * the isolation forest): pure-rand's xoroshiro128+, used through its mutating calls only.
 */
import prand, { type RandomGenerator } from 'pure-rand';

const TWO_POW_NEG_32 = 2.3283064365386963e-10;

/** Thin wrapper over pure-rand's xoroshiro128+ that uses only its unsafe (mutating) calls. */
export class Random {
  private spare = 0;
  private hasSpare = false;
  private readonly g: RandomGenerator;

  constructor(seed: number, stream: number) {
    this.g = prand.xoroshiro128plus(mix32(seed, stream));
    // xoroshiro's first outputs echo a small seed; let the state mix first.
    for (let i = 0; i < 16; i++) this.g.unsafeNext();
  }

  /** Uniform in [0, 1), 32-bit resolution. */
  next(): number {
    return (this.g.unsafeNext() >>> 0) * TWO_POW_NEG_32;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Exponential with mean 1. */
  exp(): number {
    return -Math.log(((this.g.unsafeNext() >>> 0) + 1) * TWO_POW_NEG_32);
  }

  /** Standard normal (Box–Muller, caching the second value). */
  normal(): number {
    if (this.hasSpare) {
      this.hasSpare = false;
      return this.spare;
    }
    const r = Math.sqrt(2 * this.exp());
    const a = 2 * Math.PI * this.next();
    this.spare = r * Math.sin(a);
    this.hasSpare = true;
    return r * Math.cos(a);
  }

  /** Log-normal with the given median and log-scale sigma, rounded to an integer ≥ 0. */
  logNormal(median: number, sigma: number): number {
    return Math.round(median * Math.exp(sigma * this.normal()));
  }
}

/** murmur3 fmix32 of seed and stream number: independent-looking seeds for each source. */
export function mix32(seed: number, stream: number): number {
  let h = (seed | 0) ^ Math.imul(stream + 1, 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) | 0;
}
