import { z } from 'zod';
import { savedState } from './saved-state.js';
import { RobustEwma, robustEwmaOptionsSchema } from './robust-ewma.js';

/** Options of {@link Cusum}; validated, unknown keys rejected. */
export const cusumOptionsSchema = z
  .object({
    /** The slow baseline the residuals are taken against (a {@link RobustEwma}). Default alpha 0.05, warm-up 20. */
    baseline: robustEwmaOptionsSchema.prefault({ alpha: 0.05, warmup: 20 }),
    /** Allowance k, in scales: a residual must exceed it to add evidence. Default 1. */
    k: z.number().nonnegative().default(1),
    /** Decision interval h, in scales: the statistic at which the score is 0.5. Default 5. */
    h: z.number().positive().default(5),
    /** Most one value can add, in scales, so that one spike is not a sustained shift. Default 5. */
    max_step: z.number().positive().default(5),
  })
  .strict();

/** The statistic is capped at this many h (score 0.94), so that it drains within a few dozen values after a long burst. */
const MAX_H = 4;

/** Options as given (every key optional). */
export type CusumOptions = z.input<typeof cusumOptionsSchema>;

/**
 * One-sided CUSUM (Page, "Continuous inspection schemes", Biometrika 1954) for sustained rises:
 * S ← max(0, S + min(z, max_step) − k), with z the value's deviation from a slow robust EWMA
 * baseline in scales. A level that stays up accumulates evidence window after window, where a
 * per-window deviation test sees only a few scales each time; an isolated spike adds at most
 * max_step − k. The score is E² / (E² + h²) with E = min(S, h·z) (0.5 at E = h, 0.8 at 2h) for
 * a value above the allowance, and 0 for one at or below it. S is capped at 4h. As the baseline adapts
 * (within about 1/alpha values), a new steady level stops adding evidence and S drains.
 * O(1) state and time.
 */
export class Cusum {
  private readonly opts: z.output<typeof cusumOptionsSchema>;
  private readonly base: RobustEwma;
  private s = 0;

  constructor(options: CusumOptions = {}, base?: RobustEwma) {
    this.opts = cusumOptionsSchema.parse(options);
    this.base = base ?? new RobustEwma(this.opts.baseline);
  }

  /** The value's deviation and the statistic after it, or null while the baseline warms up (or for a non-finite value). */
  private next(value: number): { z: number; s: number } | null {
    if (!Number.isFinite(value) || this.base.learned < (this.opts.baseline.warmup ?? 20)) return null;
    const zValue = (value - this.base.location) / this.base.scale();
    const s = Math.min(MAX_H * this.opts.h, Math.max(0, this.s + Math.min(zValue, this.opts.max_step) - this.opts.k));
    return { z: zValue, s };
  }

  /**
   * Score in [0, 1] of `value`, without learning it: E² / (E² + h²) with E = min(S, h·z), the
   * accumulated evidence but no more than the value's own deviation supports. A window 2 scales
   * up inside a sustained rise scores 0.8; the ordinary windows after a burst, while S drains,
   * score by their own small deviation; a value at or below the allowance scores 0.
   */
  score(_timestampMs: number, value: number): number {
    const n = this.next(value);
    if (n === null || !(n.z > this.opts.k)) return 0;
    const h = this.opts.h;
    const e = Math.min(n.s, h * n.z);
    return (e * e) / (e * e + h * h);
  }

  /** Learns `value` into the statistic and the baseline (non-finite values are ignored). */
  learn(timestampMs: number, value: number): void {
    if (!Number.isFinite(value)) return;
    const n = this.next(value);
    if (n !== null) this.s = n.s;
    this.base.learn(timestampMs, value);
  }

  /** Scores, then learns (CONTRACTS §6). */
  update(timestampMs: number, value: number): number {
    const s = this.score(timestampMs, value);
    this.learn(timestampMs, value);
    return s;
  }

  /** Serialisable state: the options, the statistic and the baseline's state. */
  toJSON(): { options: z.output<typeof cusumOptionsSchema>; s: number; baseline: ReturnType<RobustEwma['toJSON']> } {
    return { options: this.opts, s: this.s, baseline: this.base.toJSON() };
  }

  /** Restores {@link toJSON} output; throws a TypeError naming what is wrong. */
  static fromJSON(state: unknown): Cusum {
    const W = 'Cusum.fromJSON';
    const { o, options } = savedState(W, state, cusumOptionsSchema);
    if (typeof o.s !== 'number' || !Number.isFinite(o.s) || o.s < 0) throw new TypeError(`${W}: 's' must be a finite number ≥ 0`);
    const d = new Cusum(options, RobustEwma.fromJSON(o.baseline));
    d.s = o.s;
    return d;
  }
}
