import { median, medianAbsoluteDeviation } from 'simple-statistics';
import { ENTITY_TYPES as TYPES, type EntityType, type WindowAggregateRow } from '../consumers/aggregates.js';
import { Random, mix32 } from '../random.js';
import { IsolationForest, type IsolationForestJSON } from './isolation-forest.js';

/**
 * Population features of one entity's window: what it sends, not how much. Each is invariant
 * to the entity's size, so the biggest network growing (a push notification to its users) is not
 * an outlier, while the shape of bot traffic is: load per client (log-scaled), user agents per
 * client, the busiest path's share, and the shares bots skew (auth
 * failures, POSTs, static assets, failed challenges, HTTP/1.1, server errors). Counts of
 * distinct paths or requests per client on average were tried and left out: they grow or shrink
 * with size (a big network has more requests per path and behind each NAT address). The size
 * itself is the volume detector's business.
 */
export const POPULATION_FEATURES: readonly { name: string; of: (r: WindowAggregateRow) => number }[] = [
  { name: 'log_requests_per_ip_max', of: (r) => Math.log1p(r.requests_per_ip_max) },
  // The busiest path's share: high for a flood of one URL or a login, low for a catalogue sweep.
  // (Aggregates restored from an older version may lack top paths: then it is missing, NaN.)
  { name: 'top_path_share', of: (r) => (r.requests ? Math.min(1, ((r.top_path_requests as number[] | undefined)?.[0] ?? Number.NaN) / r.requests) : 0) },
  { name: 'user_agents_per_ip', of: (r) => (r.unique_ips ? r.unique_user_agents / r.unique_ips : 0) },
  { name: 'auth_failure_share', of: (r) => (r.requests ? (r.status_401 + r.status_403) / r.requests : 0) },
  { name: 'post_share', of: (r) => (r.requests ? r.post_requests / r.requests : 0) },
  { name: 'static_share', of: (r) => (r.requests ? r.static_requests / r.requests : 0) },
  { name: 'challenge_failed_share', of: (r) => (r.requests ? r.challenge_failed / r.requests : 0) },
  { name: 'http1_share', of: (r) => (r.requests ? r.http1_requests / r.requests : 0) },
  { name: 'error_share', of: (r) => (r.requests ? r.status_5xx / r.requests : 0) },
];

const F = POPULATION_FEATURES.length;

/** Options of {@link PopulationScorer}. */
export interface PopulationOptions {
  /** Windows whose vectors the reservoir keeps. Default 30 (5 minutes at a 10 s slide). */
  windows?: number;
  /** Vectors kept per window and entity type (a seeded random sample beyond it). Default 256. */
  perWindow?: number;
  /** Windows between two refits. Default 6. */
  refitEvery?: number;
  /** Vectors needed before the first fit. Default 256. */
  minTraining?: number;
  /** Fewest requests for an entity's window to be scored or learned: the population is the active entities. Default 1. */
  minRequests?: number;
  /** Seed of the sampling and the forests. Default 0. */
  seed?: number;
  /** Fits the models; default {@link inlineTrainer} (in this thread). The pipeline passes a worker thread's. */
  trainer?: PopulationTrainer;
}

/** One entity's population score and what drove it. */
export interface PopulationScore {
  /** Calibrated to [0, 1]: −log10 of the tail probability among training vectors, over 4 (0.8 ≈ 1 in 1,600). */
  score: number;
  /** The forest's raw score (Liu et al.), in (0, 1]. */
  raw: number;
  /** Features furthest from the population's median, in robust deviations, largest first (up to 3). */
  reasons: { feature: string; value: number; typical: number; z: number }[];
}

/** What a fit needs: the training vectors, row-major (n × features), and the forest's seed. */
export interface TrainJob {
  vectors: Float64Array;
  features: number;
  seed: number;
}

/** What a fit gives: the normalisation, the forest and the calibration (training scores, ascending). */
export interface TrainResult {
  medians: number[];
  scales: number[];
  forest: IsolationForestJSON;
  calibration: Float64Array;
}

/**
 * Fits population models. `train` may answer at once (in this thread) or later (a worker
 * thread); the scorer installs a result only at the next window close, so both give the
 * same verdicts.
 */
export interface PopulationTrainer {
  train(job: TrainJob): TrainResult | Promise<TrainResult>;
}

/**
 * The fit itself, the same in this thread and in the worker: robust normalisation (median
 * and 1.4826·MAD per feature, floored at {@link MIN_SCALE}), an
 * isolation forest, and the training vectors' own scores as the calibration.
 */
export function trainPopulationModel(job: TrainJob): TrainResult {
  const f = job.features;
  const n = job.vectors.length / f;
  if (!Number.isInteger(n) || n < 2) throw new RangeError(`trainPopulationModel: need at least 2 vectors of ${f} features, got ${job.vectors.length} values`);
  const medians: number[] = [];
  const scales: number[] = [];
  for (let k = 0; k < f; k++) {
    // Missing values (non-finite) are left out of the normalisation, as the forest leaves them out of splits.
    const col: number[] = [];
    for (let i = 0; i < n; i++) {
      const x = job.vectors[i * f + k] as number;
      if (Number.isFinite(x)) col.push(x);
    }
    medians.push(col.length ? median(col) : 0);
    scales.push(col.length ? Math.max(1.4826 * medianAbsoluteDeviation(col), MIN_SCALE) : 1);
  }
  const rows: number[][] = [];
  for (let i = 0; i < n; i++) rows.push(normalise(medians, scales, job.vectors.subarray(i * f, (i + 1) * f)));
  const forest = new IsolationForest({ seed: job.seed }).fit(rows);
  return { medians, scales, forest: forest.toJSON(), calibration: forest.score(rows).sort() };
}

/**
 * Smallest robust scale of a feature. Every feature is of order 1 (shares, exponents, logs of
 * per-client rates); most small entities have shares of exactly 0 (MAD 0), and without a floor
 * a big network's ordinary 0.7% of POSTs would be many deviations from them. 0.05 is 5 points
 * of a share.
 */
const MIN_SCALE = 0.05;

/** Fits in the calling thread (tests, the library default). */
export const inlineTrainer: PopulationTrainer = { train: trainPopulationModel };

interface Sample {
  /** Window start, epoch ms. */
  start: number;
  /** Row-major vectors of the window's (sampled) active entities. */
  vectors: Float64Array;
}

interface Installed {
  fit: number;
  windows: number[];
  forest: IsolationForest;
  medians: number[];
  scales: number[];
  calibration: Float64Array;
}

interface Pending {
  fit: number;
  windows: number[];
  result: TrainResult | null;
  error: unknown;
  done: Promise<void>;
}

interface TypeModel {
  type: EntityType;
  /** Samples of recent windows, oldest first; windows the installed or pending fit used are kept too. */
  reservoir: Sample[];
  model: Installed | null;
  pending: Pending | null;
  windowsSinceFit: number;
  /** Fits requested so far (the next fit's number; it seeds the forest). */
  fits: number;
}

/** Checkpoint of a type's schedule (the `p|meta` changelog value holds one per type). */
interface TypeMetaJSON {
  since_fit: number;
  fits: number;
  model: { fit: number; windows: number[] } | null;
  pending: { fit: number; windows: number[] } | null;
}

/** One changelog record of the population state: `value` null deletes the key. */
export interface PopulationChange {
  key: string;
  value: string | null;
}

/** Changelog key prefix of the population state. */
export const POPULATION_KEY = 'p|';

/**
 * The population view: at each window close, every active entity of a type is scored against
 * the feature vectors of the population's recent windows with an isolation forest. Features are
 * robustly normalised (median and MAD of the training vectors); the forest is refit every few
 * windows on a bounded reservoir of recent windows' vectors, leaving out the vectors the
 * decision flagged, so an attack does not become normal. Raw scores are calibrated against the
 * training vectors' own scores, so that a score means the same whatever the data's shape.
 *
 * Fits run in the trainer (a worker thread in the pipeline): a fit requested when window k is
 * learned is installed when window k+1 is scored ({@link settle} waits for it if it is not done;
 * a fit takes tens of ms against a slide of seconds). Where the fit ran never changes a score,
 * so replay is deterministic for a seed. Memory is bounded by (windows + refitEvery) × perWindow
 * vectors per type. The state is checkpointed per window sample ({@link takeChanges}); a restored
 * scorer refits the installed model from its samples with the same seed, which gives the same forest.
 */
export class PopulationScorer {
  private readonly opts: Required<Omit<PopulationOptions, 'trainer'>>;
  private readonly trainer: PopulationTrainer;
  private readonly models = new Map<EntityType, TypeModel>();
  /** Changelog keys changed since {@link takeChanges}. */
  private readonly dirty = new Set<string>();
  private metaDirty = false;
  /** Schedules read by {@link restore}, applied by {@link completeRestore}. */
  private readonly restoredMeta = new Map<EntityType, TypeMetaJSON>();

  constructor(options: PopulationOptions = {}) {
    const { trainer, ...rest } = options;
    this.opts = { windows: 30, perWindow: 256, refitEvery: 6, minTraining: 256, minRequests: 1, seed: 0, ...rest };
    this.trainer = trainer ?? inlineTrainer;
  }

  private model(type: EntityType): TypeModel {
    let m = this.models.get(type);
    if (!m) {
      m = { type, reservoir: [], model: null, pending: null, windowsSinceFit: 0, fits: 0 };
      this.models.set(type, m);
    }
    return m;
  }

  /** Whether a type has a fitted model (before that, {@link score} gives nothing for it). */
  ready(type: EntityType): boolean {
    const m = this.models.get(type);
    return m?.model != null || m?.pending?.result != null;
  }

  /** Waits for the fits requested so far (a no-op when the trainer answered at once). */
  async settle(): Promise<void> {
    for (const m of this.models.values()) if (m.pending) await m.pending.done;
  }

  /**
   * Installs finished fits; throws if one failed, or if one is still running and `strict` (the
   * caller must {@link settle} before scoring).
   */
  private install(strict: boolean): void {
    for (const m of this.models.values()) {
      const p = m.pending;
      if (!p) continue;
      if (p.error !== undefined) throw new Error(`PopulationScorer: a model fit failed: ${String(p.error)}`, { cause: p.error });
      if (!p.result) {
        if (strict) throw new Error('PopulationScorer: a fit is still running; await settle() before scoring the next window');
        continue;
      }
      m.model = installed(p.fit, p.windows, p.result);
      m.pending = null;
      this.metaDirty = true;
      this.trim(m);
    }
  }

  /**
   * Scores the active rows (requests ≥ minRequests) of one window; rows of types without a
   * model, and inactive rows, are left out. Installs the fits finished since the last window.
   */
  score(rows: readonly WindowAggregateRow[]): Map<WindowAggregateRow, PopulationScore> {
    this.install(true);
    const out = new Map<WindowAggregateRow, PopulationScore>();
    for (const [type, list] of this.active(rows)) {
      const m = this.models.get(type)?.model;
      if (!m) continue;
      const values = list.map((r) => features(r));
      const raw = m.forest.score(values.map((v) => normalise(m.medians, m.scales, v)));
      list.forEach((r, i) => {
        const rs = raw[i] as number;
        const v = values[i] as number[];
        let top: PopulationScore['reasons'] | undefined;
        // Reasons are read for flagged windows only: worked out on first read, not for every entity.
        out.set(r, {
          score: calibrate(m.calibration, rs),
          raw: rs,
          get reasons() {
            return (top ??= reasons(m, v));
          },
        });
      });
    }
    return out;
  }

  /**
   * Adds a closed window's active rows to the reservoir, except those in `flagged` (the windows
   * the decision flagged), and requests a type's refit every `refitEvery` windows (or the first
   * fit once minTraining vectors are in). A fit requested here is installed by the next window's
   * {@link score} (or learn, if it is done by then).
   */
  learn(windowStart: number, rows: readonly WindowAggregateRow[], flagged: ReadonlySet<WindowAggregateRow> = new Set()): void {
    // Fits finished by now go in first (normally {@link score} of this window installed them already).
    this.install(false);
    const byType = this.active(rows.filter((r) => !flagged.has(r)));
    for (const type of TYPES) {
      const list = byType.get(type);
      if (!list && !this.models.has(type)) continue;
      const m = this.model(type);
      const sample: Sample = { start: windowStart, vectors: this.sample(type, windowStart, list ?? []) };
      m.reservoir.push(sample);
      this.dirty.add(sampleKey(type, windowStart));
      m.windowsSinceFit++;
      this.metaDirty = true;
      const recent = this.recent(m);
      let size = 0;
      for (const s of recent) size += s.vectors.length / F;
      if (!m.pending && size >= Math.max(2, this.opts.minTraining) && (m.windowsSinceFit >= this.opts.refitEvery || m.model === null)) {
        this.request(m, m.fits++, recent.map((s) => s.start));
      }
      this.trim(m);
    }
  }

  /** The last `windows` samples: a fit's training set. */
  private recent(m: TypeModel): Sample[] {
    return m.reservoir.slice(-this.opts.windows);
  }

  /** Starts fit number `fit` on the samples of `windows` (window starts, oldest first). */
  private request(m: TypeModel, fit: number, windows: number[]): void {
    m.windowsSinceFit = 0;
    const p: Pending = { fit, windows, result: null, error: undefined, done: Promise.resolve() };
    m.pending = p;
    this.metaDirty = true;
    const job = this.jobOf(m, fit, windows);
    let answer: TrainResult | Promise<TrainResult>;
    try {
      answer = this.trainer.train(job);
    } catch (e) {
      p.error = e;
      return;
    }
    if (answer instanceof Promise) {
      p.done = answer.then(
        (r) => void (p.result = r),
        (e: unknown) => void (p.error = e ?? new Error('fit failed')),
      );
    } else p.result = answer;
  }

  /** Drops samples no longer recent and not used by the installed or pending fit. */
  private trim(m: TypeModel): void {
    const keep = new Set<number>(this.recent(m).map((s) => s.start));
    for (const w of m.model?.windows ?? []) keep.add(w);
    for (const w of m.pending?.windows ?? []) keep.add(w);
    m.reservoir = m.reservoir.filter((s) => {
      if (keep.has(s.start)) return true;
      this.dirty.add(sampleKey(m.type, s.start));
      return false;
    });
  }

  /** Rows with at least minRequests requests, by type. */
  private active(rows: readonly WindowAggregateRow[]): Map<EntityType, WindowAggregateRow[]> {
    const out = new Map<EntityType, WindowAggregateRow[]>();
    for (const r of rows) {
      if (r.requests < this.opts.minRequests) continue;
      let list = out.get(r.entity_type);
      if (!list) out.set(r.entity_type, (list = []));
      list.push(r);
    }
    return out;
  }

  /**
   * At most perWindow vectors (a partial Fisher–Yates, in their original order), drawn from a
   * stream seeded by the scorer's seed, the type and the window: the same window gives the same
   * sample after a restart, with no generator state to checkpoint.
   */
  private sample(type: EntityType, windowStart: number, rows: WindowAggregateRow[]): Float64Array {
    const k = this.opts.perWindow;
    let picked = rows;
    if (rows.length > k) {
      const rng = new Random(this.opts.seed, mix32(TYPES.indexOf(type), mix32(Math.floor(windowStart / 2 ** 32), windowStart >>> 0)));
      const idx = rows.map((_, i) => i);
      for (let i = 0; i < k; i++) {
        const j = i + rng.int(idx.length - i);
        [idx[i], idx[j]] = [idx[j] as number, idx[i] as number];
      }
      picked = idx
        .slice(0, k)
        .sort((a, b) => a - b)
        .map((i) => rows[i] as WindowAggregateRow);
    }
    const out = new Float64Array(picked.length * F);
    picked.forEach((r, i) => out.set(features(r), i * F));
    return out;
  }

  /**
   * Changelog records since the last call: each window sample added (`p|<type>|<start>`, the
   * vectors as base64 float64) or dropped (null), and `p|meta` (the fit schedule) when it changed.
   */
  takeChanges(): PopulationChange[] {
    const out: PopulationChange[] = [];
    for (const key of this.dirty) {
      const [, type, start] = key.split('|') as [string, EntityType, string];
      const s = this.models.get(type)?.reservoir.find((x) => x.start === Number(start));
      out.push({ key, value: s ? Buffer.from(s.vectors.buffer, s.vectors.byteOffset, s.vectors.byteLength).toString('base64') : null });
    }
    this.dirty.clear();
    if (this.metaDirty) {
      const meta: Record<string, TypeMetaJSON> = {};
      for (const [type, m] of this.models) {
        meta[type] = {
          since_fit: m.windowsSinceFit,
          fits: m.fits,
          model: m.model ? { fit: m.model.fit, windows: m.model.windows } : null,
          pending: m.pending ? { fit: m.pending.fit, windows: m.pending.windows } : null,
        };
      }
      out.push({ key: `${POPULATION_KEY}meta`, value: JSON.stringify({ v: 1, types: meta }) });
      this.metaDirty = false;
    }
    return out;
  }

  /**
   * Installs one changelog record read back (any order); call {@link completeRestore} after the
   * last. Throws a TypeError naming what is wrong.
   */
  restore(key: string, value: string): void {
    const W = 'PopulationScorer.restore';
    if (key === `${POPULATION_KEY}meta`) {
      let o: unknown;
      try {
        o = JSON.parse(value);
      } catch {
        throw new TypeError(`${W}: 'p|meta' is not JSON`);
      }
      const meta = o as { v?: unknown; types?: Record<string, TypeMetaJSON> };
      if (meta.v !== 1 || typeof meta.types !== 'object' || meta.types === null) throw new TypeError(`${W}: 'p|meta' must be {v: 1, types: {...}}`);
      for (const [type, t] of Object.entries(meta.types)) {
        if (!TYPES.includes(type as EntityType)) throw new TypeError(`${W}: unknown entity type '${type}' in 'p|meta'`);
        const m = this.model(type as EntityType);
        m.windowsSinceFit = t.since_fit;
        m.fits = t.fits;
        this.restoredMeta.set(type as EntityType, t);
      }
      return;
    }
    const parts = key.split('|');
    if (parts.length !== 3 || parts[0] !== 'p' || !TYPES.includes(parts[1] as EntityType) || !/^-?\d+$/.test(parts[2] as string)) {
      throw new TypeError(`${W}: unknown key '${key}' (expected p|meta or p|<type>|<window start>)`);
    }
    const b = Buffer.from(value, 'base64');
    if (b.length % (8 * F) !== 0) throw new TypeError(`${W}: '${key}' must hold whole vectors of ${F} float64 values, got ${b.length} bytes`);
    const vectors = new Float64Array(b.length / 8);
    new Uint8Array(vectors.buffer).set(b);
    const m = this.model(parts[1] as EntityType);
    m.reservoir.push({ start: Number(parts[2]), vectors });
  }

  /**
   * Finishes a restore: orders the samples, refits the installed model from its samples (in this
   * thread: the same seed and vectors give the same forest) and requests the pending fit again.
   */
  completeRestore(): void {
    for (const [type, m] of this.models) {
      m.reservoir.sort((a, b) => a.start - b.start);
      const t = this.restoredMeta.get(type);
      if (!t) continue;
      const have = new Set(m.reservoir.map((s) => s.start));
      const missing = [...(t.model?.windows ?? []), ...(t.pending?.windows ?? [])].filter((w) => !have.has(w));
      if (missing.length > 0) throw new TypeError(`PopulationScorer.completeRestore: samples of windows ${missing.slice(0, 3).join(', ')} of type ${type} are missing`);
      if (t.model) {
        // Refit here, in this thread, whatever the trainer: restore is startup, and the model is needed now.
        m.model = installed(t.model.fit, t.model.windows, trainPopulationModel(this.jobOf(m, t.model.fit, t.model.windows)));
      }
      if (t.pending) this.request(m, t.pending.fit, t.pending.windows);
      m.windowsSinceFit = t.since_fit;
    }
    this.restoredMeta.clear();
    this.dirty.clear();
    this.metaDirty = false;
  }

  private jobOf(m: TypeModel, fit: number, windows: number[]): TrainJob {
    const bySt = new Map(m.reservoir.map((s) => [s.start, s]));
    const parts = windows.map((w) => (bySt.get(w) as Sample).vectors);
    const vectors = new Float64Array(parts.reduce((a, v) => a + v.length, 0));
    let at = 0;
    for (const v of parts) {
      vectors.set(v, at);
      at += v.length;
    }
    return { vectors, features: F, seed: this.opts.seed * 1_000 + fit };
  }
}

function installed(fit: number, windows: number[], r: TrainResult): Installed {
  return { fit, windows, forest: IsolationForest.fromJSON(r.forest), medians: r.medians, scales: r.scales, calibration: r.calibration };
}

function sampleKey(type: EntityType, start: number): string {
  return `${POPULATION_KEY}${type}|${start}`;
}

function features(r: WindowAggregateRow): number[] {
  return POPULATION_FEATURES.map((f) => f.of(r));
}

function normalise(medians: readonly number[], scales: readonly number[], v: ArrayLike<number>): number[] {
  const out = new Array<number>(medians.length);
  for (let k = 0; k < medians.length; k++) out[k] = ((v[k] as number) - (medians[k] as number)) / (scales[k] as number);
  return out;
}

function reasons(m: Installed, v: readonly number[]): PopulationScore['reasons'] {
  return POPULATION_FEATURES.map((f, k) => {
    const value = v[k] as number;
    return { feature: f.name, value, typical: m.medians[k] as number, z: (value - (m.medians[k] as number)) / (m.scales[k] as number) };
  })
    .filter((x) => Math.abs(x.z) >= 3)
    .sort((a, b) => Math.abs(b.z) - Math.abs(a.z))
    .slice(0, 3);
}

/**
 * Calibrated score: the tail probability p of `raw` among the training scores (with +1
 * smoothing, so p ≥ 1/(n+1)), mapped to min(1, −log10(p) / 4). Typical rows land near 0.1–0.3;
 * 0.8 is p ≈ 6 · 10⁻⁴.
 */
function calibrate(sorted: Float64Array, raw: number): number {
  const n = sorted.length;
  if (n === 0) return 0;
  // Training scores at or above raw (binary search for the first ≥ raw).
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] as number) < raw) lo = mid + 1;
    else hi = mid;
  }
  const p = (n - lo + 1) / (n + 1);
  return Math.min(1, -Math.log10(p) / 4);
}
