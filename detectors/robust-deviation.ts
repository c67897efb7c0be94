import { median, medianAbsoluteDeviation } from 'simple-statistics';
import { z } from 'zod';
import { savedState } from './saved-state.js';

/** Hyperparameters of {@link RobustDeviation}. */
export const robustDeviationOptionsSchema = z
  .object({
    /** How many past values form the baseline (a ring buffer). Default 60. */
    history: z.number().int().min(3).max(10_000).default(60),
    /** Values needed before any score above 0 is given. Default 18. */
    warmup: z.number().int().min(1).default(18),
    /**
     * Noise floor of the spread: `poisson` treats values as counts, whose natural spread is
     * sqrt(mean), so a quiet but perfectly regular entity is not flagged for a tiny change.
     * Default `none`.
     */
    noise_floor: z.enum(['none', 'poisson']).default('none'),
    /** Smallest spread ever used, in the value's unit. Default 1e-9. */
    min_scale: z.number().positive().default(1e-9),
    /**
     * Smallest spread as a share of the typical value (overdispersion): real traffic of a big
     * entity swings by more than Poisson noise, so a rise of a few percent of a large count
     * is not many deviations. 0.1 needs 2.2x typical for a score of 0.8 at half_score_z 6.
     * Default 0 (off).
     */
    relative_floor: z.number().min(0).max(10).default(0),
    /** Robust deviations at which the score is 0.5; the score is z²/(z²+half²). Default 6. */
    half_score_z: z.number().positive().default(6),
  })
  .strict()
  .refine((o) => o.warmup <= o.history, { message: 'warmup must not exceed history', path: ['warmup'] });

/** Options accepted by {@link RobustDeviation} (all optional, defaults as documented). */
export type RobustDeviationOptions = z.input<typeof robustDeviationOptionsSchema>;

/** What a score was based on, for reasons in words. */
export interface Deviation {
  /** Median of the baseline. */
  typical: number;
  /** Robust spread: max(1.4826·MAD, noise floor, relative floor · typical, min_scale). */
  spread: number;
  /** (value − typical) / spread; positive when above typical. */
  z: number;
  /** Score in [0, 1]; 0 during warm-up or when the value is at or below typical. */
  score: number;
  /** Values in the baseline. */
  n: number;
}

/**
 * Robust deviation of a value from its own recent history: a robust z-score with the median
 * and the MAD (Hampel's identifier, cf. Rousseeuw & Croux 1993). Only rises above typical
 * count as anomalous. O(history) state per series; no clock, no I/O, serialisable.
 */
export class RobustDeviation {
  private readonly opts: z.output<typeof robustDeviationOptionsSchema>;
  /**
   * The baseline's values. It starts small and doubles up to `history` while the baseline
   * fills (slot i holds the i-th value until then), so a series seen once or twice, as under a
   * flood of fresh fingerprints, costs ~80 bytes of ring instead of 8 · history. A plain array
   * of doubles, not a Float64Array: V8 spends ~200 bytes on each typed array's objects.
   */
  private ring: number[];
  private count = 0;
  private next = 0;
  /**
   * Zeros assumed before the first learned value ({@link assumeZeros}): a series that appears
   * in a stream watched for a while has a history, all zeros. They age out of the baseline as
   * values are learned, exactly as learned zeros would, and cost no memory.
   */
  private prior = 0;

  /** `options` are validated (a ZodError names the bad key) unless they come from {@link parseOptions}. */
  constructor(options: RobustDeviationOptions = {}) {
    this.opts = PARSED.has(options) ? (options as ParsedOptions) : robustDeviationOptionsSchema.parse(options);
    this.ring = new Array<number>(Math.min(INITIAL_RING, this.opts.history)).fill(0);
  }

  /**
   * Validates options once for many detectors: the result passed to the constructor skips
   * validation (a scorer builds six detectors per new entity; zod would dominate that cost).
   */
  static parseOptions(options: RobustDeviationOptions = {}): RobustDeviationOptions {
    const parsed = robustDeviationOptionsSchema.parse(options);
    PARSED.add(parsed);
    return parsed;
  }

  /** Makes room for `length` values (at most history). */
  private reserve(length: number): void {
    if (length <= this.ring.length) return;
    let cap = this.ring.length;
    while (cap < length) cap *= 2;
    const bigger = new Array<number>(Math.min(cap, this.opts.history)).fill(0);
    for (let i = 0; i < this.ring.length; i++) bigger[i] = this.ring[i] as number;
    this.ring = bigger;
  }

  /**
   * Starts the baseline with `k` zeros (at most history) without storing them: what a series
   * first seen now would have learned had it been tracked while absent. Only before the
   * first value is learned; the zeros are the oldest values and leave the baseline first.
   */
  assumeZeros(k: number): void {
    if (this.count > 0) throw new Error('RobustDeviation.assumeZeros: only before the first value is learned');
    this.prior = Math.max(0, Math.min(Math.floor(k), this.opts.history));
  }

  /** Assumed zeros still in the baseline. */
  private get priorLeft(): number {
    return Math.max(0, Math.min(this.prior, this.opts.history - this.count));
  }

  /** Whether the baseline has enough values (learned or assumed) to score. */
  get ready(): boolean {
    return this.count + this.priorLeft >= this.opts.warmup;
  }

  /** Values learned so far (not counting assumed zeros). */
  get learned(): number {
    return this.count;
  }

  /** Scores `value` against the baseline without learning it. */
  explain(value: number): Deviation {
    const stored = Math.min(this.count, this.opts.history);
    const zeros = this.priorLeft;
    const n = stored + zeros;
    if (n < this.opts.warmup || n === 0) return { typical: Number.NaN, spread: Number.NaN, z: 0, score: 0, n };
    const base = this.ring.slice(0, stored);
    for (let i = 0; i < zeros; i++) base.push(0);
    const typical = median(base);
    let spread = 1.4826 * medianAbsoluteDeviation(base);
    if (this.opts.noise_floor === 'poisson') spread = Math.max(spread, Math.sqrt(Math.max(typical, 1)));
    spread = Math.max(spread, this.opts.relative_floor * Math.abs(typical), this.opts.min_scale);
    return this.at({ typical, spread, z: 0, score: 0, n }, value);
  }

  /**
   * `value` against the baseline of an earlier {@link explain} (no new median): for scoring
   * other values against the same history, e.g. a count divided by a common rise.
   */
  at(base: Deviation, value: number): Deviation {
    if (base.n < this.opts.warmup || base.n === 0) return { ...base, z: 0, score: 0 };
    const zValue = Number.isFinite(value) ? (value - base.typical) / base.spread : 0;
    const h = this.opts.half_score_z;
    const score = zValue > 0 ? (zValue * zValue) / (zValue * zValue + h * h) : 0;
    return { typical: base.typical, spread: base.spread, z: zValue, score, n: base.n };
  }

  /** Score in [0, 1] of `value` (ignores the timestamp: this detector has no seasonality). */
  score(_timestampMs: number, value: number): number {
    return this.explain(value).score;
  }

  /** Adds `value` to the baseline. Non-finite values are ignored. */
  learn(_timestampMs: number, value: number): void {
    if (!Number.isFinite(value)) return;
    // + 0 turns −0 into 0: JSON cannot carry −0, and a checkpoint must restore every value exactly.
    if (this.next >= this.ring.length) this.reserve(this.next + 1);
    this.ring[this.next] = value + 0;
    this.next = (this.next + 1) % this.opts.history;
    this.count++;
  }

  /**
   * Learns `value` `times` times, exactly as that many calls to {@link learn} would, in
   * O(min(times, history)): how a series catches up on the windows in which it was absent.
   */
  learnRepeated(timestampMs: number, value: number, times: number): void {
    if (!Number.isFinite(value) || !(times > 0)) return;
    const h = this.opts.history;
    const skip = Math.max(0, Math.floor(times) - h);
    if (skip > 0) {
      // Only the last `history` values stay in the ring: advance past the others at once.
      this.reserve(h);
      this.count += skip;
      this.next = (this.next + skip) % h;
    }
    for (let i = skip; i < times; i++) this.learn(timestampMs, value);
  }

  /** Scores, then learns (the univariate contract of CONTRACTS §6). */
  update(timestampMs: number, value: number): number {
    const s = this.score(timestampMs, value);
    this.learn(timestampMs, value);
    return s;
  }

  /** Whether every value in a full baseline is 0 (the series has gone quiet and can be dropped). */
  get quiet(): boolean {
    if (this.count + this.priorLeft < this.opts.history) return false;
    const stored = Math.min(this.count, this.opts.history);
    for (let i = 0; i < stored; i++) if (this.ring[i] !== 0) return false;
    return true;
  }

  /**
   * The learned state without the options, for checkpoints whose owner knows the options
   * ({@link RobustDeviationBaselineJSON}). Only the used part of the ring is kept: a young
   * baseline is as small as its history.
   */
  baselineJSON(): RobustDeviationBaselineJSON {
    const out: RobustDeviationBaselineJSON = { count: this.count, values: this.ring.slice(0, Math.min(this.count, this.opts.history)) };
    if (this.priorLeft > 0) out.prior = this.prior;
    return out;
  }

  /**
   * Rebuilds a detector from `options` and {@link baselineJSON} output; throws a TypeError
   * naming what is wrong, prefixed by `where` (the field of the enclosing checkpoint).
   */
  static fromBaselineJSON(options: RobustDeviationOptions, v: unknown, where = 'RobustDeviation'): RobustDeviation {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) malformed(where, 'expected an object');
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) if (k !== 'count' && k !== 'values' && k !== 'prior') malformed(where, `unknown key '${k}'`);
    const d = new RobustDeviation(options);
    d.install(where, o.values, o.count, Math.min(Number(o.count), d.opts.history));
    d.installPrior(where, o.prior);
    return d;
  }

  /** Serialisable state (the univariate contract): the options and the whole ring (and `prior`, when zeros are assumed). */
  toJSON(): { options: z.output<typeof robustDeviationOptionsSchema>; values: number[]; count: number; next: number; prior?: number } {
    const values = new Array<number>(this.opts.history).fill(0);
    for (let i = 0; i < this.ring.length; i++) values[i] = this.ring[i] as number;
    const out: { options: z.output<typeof robustDeviationOptionsSchema>; values: number[]; count: number; next: number; prior?: number } = { options: this.opts, values, count: this.count, next: this.next };
    if (this.priorLeft > 0) out.prior = this.prior;
    return out;
  }

  /** Restores a detector from {@link toJSON} output; throws a TypeError naming what is wrong. */
  static fromJSON(state: unknown): RobustDeviation {
    const W = 'RobustDeviation.fromJSON';
    const { o, options } = savedState(W, state, robustDeviationOptionsSchema);
    const d = new RobustDeviation(options);
    d.install(W, o.values, o.count, d.opts.history);
    d.installPrior(W, o.prior);
    if (o.next !== d.next) malformed(W, `'next' must be count mod history (${d.next}), got ${JSON.stringify(o.next)}`);
    return d;
  }

  /** Validates and installs the assumed zeros of a checkpoint (absent: none). */
  private installPrior(where: string, prior: unknown): void {
    if (prior === undefined) return;
    if (typeof prior !== 'number' || !Number.isSafeInteger(prior) || prior < 1 || prior > this.opts.history) {
      malformed(where, `'prior' must be an integer in [1, ${this.opts.history}], got ${JSON.stringify(prior)}`);
    }
    this.prior = prior;
  }

  /** Validates and installs a ring of `length` values and the count of values ever learned. */
  private install(where: string, values: unknown, count: unknown, length: number): void {
    if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) malformed(where, `'count' must be a non-negative integer, got ${JSON.stringify(count)}`);
    if (!Array.isArray(values)) malformed(where, "'values' must be an array");
    if (values.length !== length) {
      malformed(where, `'values' has ${values.length} items, expected ${length} for count ${count} and history ${this.opts.history}`);
    }
    this.reserve(Math.max(values.length, Math.min(count, this.opts.history)));
    for (let i = 0; i < values.length; i++) {
      const x: unknown = values[i];
      if (typeof x !== 'number' || !Number.isFinite(x)) malformed(where, `values[${i}] must be a finite number, got ${JSON.stringify(x)}`);
      this.ring[i] = x;
    }
    this.count = count;
    this.next = count % this.opts.history;
  }
}

/**
 * Checkpoint form of a {@link RobustDeviation} whose options are known from elsewhere:
 * `count` values ever learned, and the ring as stored (its first min(count, history) slots;
 * the next value goes to slot count mod history).
 */
export interface RobustDeviationBaselineJSON {
  count: number;
  values: number[];
  /** Zeros assumed before the first learned value, when some are still in the baseline. */
  prior?: number;
}

/** First ring size: most fresh series never see more than a few windows. */
const INITIAL_RING = 4;

type ParsedOptions = z.output<typeof robustDeviationOptionsSchema>;
/** Option objects made by {@link RobustDeviation.parseOptions}, already valid. */
const PARSED = new WeakSet<object>();

function malformed(where: string, message: string): never {
  throw new TypeError(`${where}: ${message}`);
}
