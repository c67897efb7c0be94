import { median, medianAbsoluteDeviation } from 'simple-statistics';
import type { EntityType, WindowAggregateRow } from '../consumers/aggregates.js';
import { Random } from '../random.js';
import { IsolationForest } from './isolation-forest.js';

/**
 * Population features of one entity's window, chosen to tell bots from people and from flash
 * crowds: volume (log-scaled), how the volume spreads over clients, paths and agents, and the
 * shares that bots skew (auth failures, POSTs, static assets, failed challenges, HTTP/1.1).
 */
export const POPULATION_FEATURES: readonly { name: string; of: (r: WindowAggregateRow) => number }[] = [
  { name: 'log_requests', of: (r) => Math.log1p(r.requests) },
  { name: 'log_unique_ips', of: (r) => Math.log1p(r.unique_ips) },
  { name: 'log_requests_per_ip_max', of: (r) => Math.log1p(r.requests_per_ip_max) },
  { name: 'path_diversity', of: (r) => (r.requests ? r.unique_paths / r.requests : 0) },
  { name: 'log_unique_user_agents', of: (r) => Math.log1p(r.unique_user_agents) },
  { name: 'auth_failure_share', of: (r) => (r.requests ? (r.status_401 + r.status_403) / r.requests : 0) },
  { name: 'post_share', of: (r) => (r.requests ? r.post_requests / r.requests : 0) },
  { name: 'static_share', of: (r) => (r.requests ? r.static_requests / r.requests : 0) },
  { name: 'challenge_failed_share', of: (r) => (r.requests ? r.challenge_failed / r.requests : 0) },
  { name: 'http1_share', of: (r) => (r.requests ? r.http1_requests / r.requests : 0) },
];

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
  /** Seed of the sampling and the forests. Default 0. */
  seed?: number;
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

interface TypeModel {
  /** Vectors of the last `windows` windows, oldest first. */
  reservoir: number[][][];
  forest: IsolationForest | null;
  /** Raw scores of the training vectors, ascending (the calibration). */
  calibration: Float64Array;
  medians: number[];
  scales: number[];
  windowsSinceFit: number;
  fits: number;
}

/**
 * The population view: at each window close, every active entity of a type is scored against
 * the feature vectors of the population's recent windows with an isolation forest. Features are
 * robustly normalised (median and MAD of the training vectors); the forest is refit every few
 * windows on a bounded reservoir of recent windows' vectors, leaving out the vectors of windows
 * the caller flagged, so an attack does not become normal. Raw scores are calibrated against the
 * training vectors' own scores, so that a score means the same whatever the data's shape.
 *
 * Deterministic for a seed and the same windows; memory is bounded by windows × perWindow
 * vectors per type. Refitting here is synchronous (a few ms: bench/RESULTS.md, forest section);
 * moving it to a worker thread is for the pipeline wiring.
 */
export class PopulationScorer {
  private readonly opts: Required<PopulationOptions>;
  private readonly models = new Map<EntityType, TypeModel>();
  private readonly rng: Random;

  constructor(options: PopulationOptions = {}) {
    this.opts = { windows: 30, perWindow: 256, refitEvery: 6, minTraining: 256, seed: 0, ...options };
    this.rng = new Random(this.opts.seed, 0x9091);
  }

  private model(type: EntityType): TypeModel {
    let m = this.models.get(type);
    if (!m) {
      m = { reservoir: [], forest: null, calibration: new Float64Array(0), medians: [], scales: [], windowsSinceFit: 0, fits: 0 };
      this.models.set(type, m);
    }
    return m;
  }

  /** Whether a type has a fitted model (before that, {@link score} gives nothing for it). */
  ready(type: EntityType): boolean {
    return this.models.get(type)?.forest != null;
  }

  /** Scores the rows of one window (all of one type or mixed); rows of types without a model are left out. */
  score(rows: readonly WindowAggregateRow[]): Map<WindowAggregateRow, PopulationScore> {
    const out = new Map<WindowAggregateRow, PopulationScore>();
    const byType = groupByType(rows);
    for (const [type, list] of byType) {
      const m = this.models.get(type);
      if (!m?.forest) continue;
      const values = list.map((r) => features(r));
      const raw = m.forest.score(values.map((v) => this.normalise(m, v)));
      list.forEach((r, i) => {
        const rs = raw[i] as number;
        out.set(r, { score: calibrate(m.calibration, rs), raw: rs, reasons: this.reasons(m, values[i] as number[]) });
      });
    }
    return out;
  }

  /**
   * Adds a closed window's rows to the reservoir, except those in `flagged` (the windows the
   * decision flagged), and refits a type's forest every `refitEvery` windows.
   */
  learn(rows: readonly WindowAggregateRow[], flagged: ReadonlySet<WindowAggregateRow> = new Set()): void {
    const byType = groupByType(rows.filter((r) => !flagged.has(r)));
    for (const type of new Set<EntityType>([...byType.keys(), ...this.models.keys()])) {
      const m = this.model(type);
      const list = byType.get(type) ?? [];
      m.reservoir.push(this.sample(list.map((r) => features(r))));
      while (m.reservoir.length > this.opts.windows) m.reservoir.shift();
      m.windowsSinceFit++;
      if (m.windowsSinceFit >= this.opts.refitEvery || (m.forest === null && this.trainingSize(m) >= this.opts.minTraining)) this.fit(m);
    }
  }

  private trainingSize(m: TypeModel): number {
    let n = 0;
    for (const w of m.reservoir) n += w.length;
    return n;
  }

  /** A seeded sample of at most perWindow vectors (a partial Fisher–Yates), in their original order. */
  private sample(vectors: number[][]): number[][] {
    const k = this.opts.perWindow;
    if (vectors.length <= k) return vectors;
    const idx = vectors.map((_, i) => i);
    for (let i = 0; i < k; i++) {
      const j = i + this.rng.int(idx.length - i);
      [idx[i], idx[j]] = [idx[j] as number, idx[i] as number];
    }
    return idx
      .slice(0, k)
      .sort((a, b) => a - b)
      .map((i) => vectors[i] as number[]);
  }

  private fit(m: TypeModel): void {
    m.windowsSinceFit = 0;
    const training = m.reservoir.flat();
    if (training.length < Math.max(2, this.opts.minTraining)) return;
    const f = POPULATION_FEATURES.length;
    m.medians = [];
    m.scales = [];
    for (let k = 0; k < f; k++) {
      const col = training.map((v) => v[k] as number);
      const med = median(col);
      // 1.4826 · MAD estimates σ for normal data; a floor keeps a constant feature from dividing by 0.
      m.medians.push(med);
      m.scales.push(Math.max(1.4826 * medianAbsoluteDeviation(col), 1e-3));
    }
    const normalised = training.map((v) => this.normalise(m, v));
    m.forest = new IsolationForest({ seed: this.opts.seed * 1_000 + m.fits }).fit(normalised);
    m.fits++;
    m.calibration = m.forest.score(normalised).sort();
  }

  private normalise(m: TypeModel, v: readonly number[]): number[] {
    return v.map((x, k) => (x - (m.medians[k] as number)) / (m.scales[k] as number));
  }

  private reasons(m: TypeModel, v: readonly number[]): PopulationScore['reasons'] {
    return POPULATION_FEATURES.map((f, k) => {
      const value = v[k] as number;
      return { feature: f.name, value, typical: m.medians[k] as number, z: (value - (m.medians[k] as number)) / (m.scales[k] as number) };
    })
      .filter((x) => Math.abs(x.z) >= 3)
      .sort((a, b) => Math.abs(b.z) - Math.abs(a.z))
      .slice(0, 3);
  }
}

function features(r: WindowAggregateRow): number[] {
  return POPULATION_FEATURES.map((f) => f.of(r));
}

function groupByType(rows: readonly WindowAggregateRow[]): Map<EntityType, WindowAggregateRow[]> {
  const out = new Map<EntityType, WindowAggregateRow[]>();
  for (const r of rows) {
    let list = out.get(r.entity_type);
    if (!list) out.set(r.entity_type, (list = []));
    list.push(r);
  }
  return out;
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
