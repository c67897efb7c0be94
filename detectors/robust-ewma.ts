import { z } from 'zod';
import { savedState } from './saved-state.js';

/** Options of {@link RobustEwma}; validated, unknown keys rejected. */
export const robustEwmaOptionsSchema = z
  .object({
    /** Weight of each new value in the moving location and scale, in (0, 1]. Default 0.1 (a memory of about 10 windows). */
    alpha: z.number().gt(0).max(1).default(0.1),
    /** Values learned before scoring starts. Default 10. */
    warmup: z.number().int().min(1).default(10),
    /** Learned values are winsorised to location ± clip_z · scale, so a burst barely moves the baseline. Default 3. */
    clip_z: z.number().positive().default(3),
    /** `poisson`: the scale is at least √location, for counts. `none`: no floor. Default `poisson`. */
    noise_floor: z.enum(['poisson', 'none']).default('poisson'),
    /** Smallest scale, in the value's unit. Default 1e-9. */
    min_scale: z.number().positive().default(1e-9),
    /** The deviation (in scales) that scores 0.5: score = z² / (z² + half_score_z²). Default 6. */
    half_score_z: z.number().positive().default(6),
  })
  .strict();

/** Options as given (every key optional). */
export type RobustEwmaOptions = z.input<typeof robustEwmaOptionsSchema>;

/**
 * Robust exponentially weighted deviation: a moving location and a moving mean absolute
 * deviation (scaled to a standard deviation by √(π/2)), learned from winsorised values, so that
 * the baseline follows level changes within about 1/alpha values but a burst moves it by at
 * most clip_z scales per value (the robust filtering of Hampel-type EWMA charts). O(1) state and
 * time per value, against the O(history) median of {@link RobustDeviation}; it adapts instead of
 * remembering, so a new steady level becomes normal after a few dozen values.
 * Only rises count: the score of a value at or below the location is 0.
 */
export class RobustEwma {
  private readonly opts: z.output<typeof robustEwmaOptionsSchema>;
  private count = 0;
  private loc = 0;
  private mad = 0;

  constructor(options: RobustEwmaOptions = {}) {
    this.opts = robustEwmaOptionsSchema.parse(options);
  }

  /** Values learned. */
  get learned(): number {
    return this.count;
  }

  /** The moving location. */
  get location(): number {
    return this.loc;
  }

  /** The moving scale, as a standard deviation (floors applied). */
  scale(): number {
    let s = Math.sqrt(Math.PI / 2) * this.mad;
    if (this.opts.noise_floor === 'poisson') s = Math.max(s, Math.sqrt(Math.max(this.loc, 1)));
    return Math.max(s, this.opts.min_scale);
  }

  /** Score in [0, 1] of `value`, without learning it; 0 during warm-up and for non-finite values. */
  score(_timestampMs: number, value: number): number {
    if (this.count < this.opts.warmup || !Number.isFinite(value)) return 0;
    const zValue = (value - this.loc) / this.scale();
    if (!(zValue > 0)) return 0;
    const h = this.opts.half_score_z;
    return (zValue * zValue) / (zValue * zValue + h * h);
  }

  /** Learns `value` (non-finite values are ignored). */
  learn(_timestampMs: number, value: number): void {
    if (!Number.isFinite(value)) return;
    this.count++;
    if (this.count === 1) {
      this.loc = value;
      this.mad = 0;
      return;
    }
    const s = this.scale();
    const c = this.opts.clip_z * s;
    const x = Math.min(Math.max(value, this.loc - c), this.loc + c);
    const a = this.opts.alpha;
    const dev = Math.abs(x - this.loc);
    this.loc += a * (x - this.loc);
    this.mad += a * (dev - this.mad);
  }

  /** Scores, then learns (CONTRACTS §6). */
  update(timestampMs: number, value: number): number {
    const s = this.score(timestampMs, value);
    this.learn(timestampMs, value);
    return s;
  }

  /** Serialisable state: the options and the three numbers learned. */
  toJSON(): { options: z.output<typeof robustEwmaOptionsSchema>; count: number; location: number; mad: number } {
    return { options: this.opts, count: this.count, location: this.loc, mad: this.mad };
  }

  /** Restores {@link toJSON} output; throws a TypeError naming what is wrong. */
  static fromJSON(state: unknown): RobustEwma {
    const W = 'RobustEwma.fromJSON';
    const { o, options } = savedState(W, state, robustEwmaOptionsSchema);
    const d = new RobustEwma(options);
    if (typeof o.count !== 'number' || !Number.isSafeInteger(o.count) || o.count < 0) throw new TypeError(`${W}: 'count' must be a non-negative integer`);
    if (typeof o.location !== 'number' || !Number.isFinite(o.location)) throw new TypeError(`${W}: 'location' must be a finite number`);
    if (typeof o.mad !== 'number' || !Number.isFinite(o.mad) || o.mad < 0) throw new TypeError(`${W}: 'mad' must be a finite number ≥ 0`);
    d.count = o.count;
    d.loc = o.location;
    d.mad = o.mad;
    return d;
  }
}
