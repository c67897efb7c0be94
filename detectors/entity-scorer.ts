import { z } from 'zod';
import { ENTITY_TYPES, splitPair, type EntityType, type WindowAggregateRow } from '../consumers/aggregates.js';
import type { ClosedWindow } from '../consumers/windows.js';
import { decide, decisionPolicySchema, expectedRises, type ExpectedRises, type PairTraffic } from './policy.js';
import { POPULATION_KEY, PopulationScorer, type PopulationChange, type PopulationScore, type PopulationTrainer } from './population.js';
import { RobustDeviation, robustDeviationOptionsSchema, type Deviation, type RobustDeviationOptions, type RobustDeviationBaselineJSON } from './robust-deviation.js';
import { scopeOf, verdictId, type Verdict } from './verdict.js';

/** Configuration of the per-entity temporal scorer. */
export const entityScorerSchema = z
  .object({
    /** Baseline of each entity's request count: a robust deviation with a Poisson noise floor. */
    robust_deviation: robustDeviationOptionsSchema.prefault({ history: 60, warmup: 18, noise_floor: 'poisson', relative_floor: 0.1 }),
    /** The population detector: an isolation forest over the active entities of each type (detectors/population.ts). */
    population: z
      .object({
        /** Default true. */
        enabled: z.boolean().default(true),
        /** Windows of vectors the forest is trained on. Default 30. */
        windows: z.number().int().min(1).max(1_000).default(30),
        /** Vectors kept per window and type (a seeded sample beyond it). Default 256. */
        per_window: z.number().int().min(8).max(100_000).default(256),
        /** Windows between refits (each in a worker thread). Default 6. */
        refit_every: z.number().int().min(1).default(6),
        /** Vectors needed before the first fit. Default 256. */
        min_training: z.number().int().min(2).default(256),
        /** Requests an entity's window needs to be part of the population (active). Default 10. */
        min_requests: z.number().int().min(1).default(10),
        /** Seed of the sampling and the forests (deterministic replay). Default 0. */
        seed: z.number().int().default(0),
      })
      .strict()
      .prefault({}),
    /** Decision policy: the ensemble, surge normalisation, drift adaptation. */
    policy: decisionPolicySchema.prefault({}),
    /** Most entities tracked per entity type; beyond it the tenth with the least recent traffic is evicted. Default 50 000. */
    max_entities_per_type: z.number().int().positive().default(50_000),
  })
  .strict();

/** Validated scorer configuration. */
export type EntityScorerConfig = z.infer<typeof entityScorerSchema>;

/**
 * Secondary features: tracked per entity so that reasons can say what else departed from
 * typical. Those marked `shift` are bot-indicative: their rise is the feature evidence of the
 * ensemble (more of the same people raise counts, not these shares or the load per client).
 */
const SECONDARY: { name: string; of: (r: WindowAggregateRow) => number; unit: Unit; shift?: boolean }[] = [
  { name: 'unique_ips', of: (r) => r.unique_ips, unit: 'count' },
  { name: 'requests_per_ip_max', of: (r) => r.requests_per_ip_max, unit: 'count', shift: true },
  // The same people sending more: a surge of people (a push, a crowd) leaves it where it was.
  { name: 'requests_per_ip_mean', of: (r) => r.requests_per_ip_mean, unit: 'ratio', shift: true },
  { name: 'auth_failure_share', of: (r) => (r.requests ? (r.status_401 + r.status_403) / r.requests : 0), unit: 'share', shift: true },
  { name: 'post_share', of: (r) => (r.requests ? r.post_requests / r.requests : 0), unit: 'share', shift: true },
  { name: 'unique_paths', of: (r) => r.unique_paths, unit: 'count' },
];

/** How a secondary feature's spread is floored: see {@link DetectorOptions}. */
type Unit = 'count' | 'share' | 'ratio';

/** Per-window decay of an entity's traffic mass (half-life about 7 windows). */
const MASS_DECAY = 0.9;


/**
 * Checkpoint form of one entity's state (a value of the scorer's changelog topic, keyed by
 * entity type and entity). `seq` is the entity's admission order, which breaks ties of `mass`
 * when evicting; `secondary` is keyed by feature name.
 */
export interface EntityStateJSON {
  /** 4; versions 1 (no `last`), 2 (no `streak`) and 3 (no `slide`) are still read. */
  v: 1 | 2 | 3 | 4;
  /** Admission order among the entities of the scorer that wrote it (an integer ≥ 0). */
  seq: number;
  /** Decayed requests per window, as of window `last`. */
  mass: number;
  /** Start of the last window learned, epoch ms (absent in version 1). */
  last?: number;
  /** Consecutive anomalous windows up to `last` (drift adaptation; version 3). */
  streak?: number;
  /** Baseline of the request count. */
  requests: RobustDeviationBaselineJSON;
  /** Baseline of the request count of the newest slide (version 4; absent before: an empty baseline). */
  slide?: RobustDeviationBaselineJSON;
  /** Baselines of the secondary features, by name (unique_ips, requests_per_ip_max, …). */
  secondary: Record<string, RobustDeviationBaselineJSON>;
}

/** One entry of {@link EntityScorer.takeChanges}: `state` null is a tombstone (the entity was dropped). */
export interface EntityChange {
  type: EntityType;
  entity: string;
  state: EntityStateJSON | null;
}

/**
 * Detector options validated once per scorer: the request baseline's, and the secondary
 * features' by unit: counts with the same floors; shares with a floor of 2 points, so that
 * 1% → 3% is not many deviations; ratios (requests per IP) with a floor of 10% of typical
 * and 0.05, so that 1.0 → 1.2 requests per IP is not many deviations either.
 */
interface DetectorOptions {
  main: RobustDeviationOptions;
  count: RobustDeviationOptions;
  share: RobustDeviationOptions;
  ratio: RobustDeviationOptions;
}

class EntityState {
  /** Exponentially decayed requests per window, as of window `last`: what eviction keeps the heaviest of. */
  mass = 0;
  /**
   * Start of the last window this state learned, epoch ms (NaN: unknown, restored from a v1
   * checkpoint). Windows after it in which the entity was absent are learned as zeros only when
   * it comes back (or found quiet), so a window changes, and checkpoints, only the entities in it.
   */
  last = Number.NaN;
  /** Consecutive anomalous windows (drift adaptation). */
  streak = 0;
  constructor(
    /** Admission order: eviction sorts by mass, then by this, which a restored map's order cannot give. */
    readonly seq: number,
    /** Replaced when drift adaptation restarts the baseline. */
    public requests: RobustDeviation,
    /** Requests of the window's newest slide (the onset view); replaced with `requests`. */
    public slide: RobustDeviation,
    readonly secondary: RobustDeviation[],
  ) {}

  static fresh(seq: number, options: DetectorOptions): EntityState {
    return new EntityState(
      seq,
      new RobustDeviation(options.main),
      new RobustDeviation(options.main),
      SECONDARY.map((f) => new RobustDeviation(options[f.unit])),
    );
  }

  toJSON(): EntityStateJSON {
    const secondary: Record<string, RobustDeviationBaselineJSON> = {};
    SECONDARY.forEach((f, i) => (secondary[f.name] = (this.secondary[i] as RobustDeviation).baselineJSON()));
    const requests = this.requests.baselineJSON();
    const slide = this.slide.baselineJSON();
    if (Number.isNaN(this.last)) return { v: 1, seq: this.seq, mass: this.mass, requests, secondary }; // restored from v1, not scored since
    return { v: 4, seq: this.seq, mass: this.mass, last: this.last, streak: this.streak, requests, slide, secondary };
  }

  static fromJSON(v: unknown, options: DetectorOptions): EntityState {
    const W = 'EntityScorer.restoreEntity';
    if (typeof v !== 'object' || v === null || Array.isArray(v)) malformed(W, 'expected an object');
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!STATE_KEYS.has(k)) malformed(W, `unknown key '${k}'`);
    if (o.v !== 1 && o.v !== 2 && o.v !== 3 && o.v !== 4) malformed(W, `unsupported version 'v': ${JSON.stringify(o.v)} (expected 1 to 4)`);
    // v1 had no 'last': every entity learned every window, so it was current as of the checkpoint.
    if (o.v !== 1 && (typeof o.last !== 'number' || !Number.isSafeInteger(o.last))) malformed(W, `'last' must be an integer (epoch ms), got ${JSON.stringify(o.last)}`);
    if (o.v === 1 && 'last' in o) malformed(W, "unknown key 'last' in a v1 state");
    const withStreak = o.v === 3 || o.v === 4;
    if (withStreak && (typeof o.streak !== 'number' || !Number.isSafeInteger(o.streak) || o.streak < 0)) malformed(W, `'streak' must be a non-negative integer, got ${JSON.stringify(o.streak)}`);
    if (!withStreak && 'streak' in o) malformed(W, `unknown key 'streak' in a v${String(o.v)} state`);
    if (o.v === 4 && !('slide' in o)) malformed(W, "'slide' is missing from a v4 state");
    if (o.v !== 4 && 'slide' in o) malformed(W, `unknown key 'slide' in a v${String(o.v)} state`);
    if (typeof o.seq !== 'number' || !Number.isSafeInteger(o.seq) || o.seq < 0) malformed(W, `'seq' must be a non-negative integer, got ${JSON.stringify(o.seq)}`);
    if (typeof o.mass !== 'number' || !Number.isFinite(o.mass) || o.mass < 0) malformed(W, `'mass' must be a finite number ≥ 0, got ${JSON.stringify(o.mass)}`);
    const requests = RobustDeviation.fromBaselineJSON(options.main, o.requests, `${W}: 'requests'`);
    // Before v4 there was no onset view: its baseline starts empty and warms up as any other.
    const slide = o.v === 4 ? RobustDeviation.fromBaselineJSON(options.main, o.slide, `${W}: 'slide'`) : new RobustDeviation(options.main);
    const sec = o.secondary;
    if (typeof sec !== 'object' || sec === null || Array.isArray(sec)) malformed(W, "'secondary' must be an object");
    const byName = sec as Record<string, unknown>;
    for (const k of Object.keys(byName)) {
      if (!SECONDARY.some((f) => f.name === k)) malformed(W, `unknown secondary feature '${k}'; known: ${SECONDARY.map((f) => f.name).join(', ')}`);
    }
    // A feature added since the state was written starts with an empty baseline (forward compatibility).
    const secondary = SECONDARY.map((f) =>
      f.name in byName
        ? RobustDeviation.fromBaselineJSON(options[f.unit], byName[f.name], `${W}: 'secondary.${f.name}'`)
        : new RobustDeviation(options[f.unit]),
    );
    const st = new EntityState(o.seq, requests, slide, secondary);
    st.mass = o.mass;
    st.last = o.v === 1 ? Number.NaN : (o.last as number);
    st.streak = withStreak ? (o.streak as number) : 0;
    return st;
  }
}

const STATE_KEYS = new Set(['v', 'seq', 'mass', 'last', 'streak', 'requests', 'slide', 'secondary']);

function malformed(where: string, message: string): never {
  throw new TypeError(`${where}: ${message}`);
}

function fmt(v: number, pct = false): string {
  if (pct) return `${(v * 100).toFixed(v < 0.1 ? 1 : 0)}%`;
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

/** Scorer-level changelog keys: `s|meta` (the scorer's start) and the population's `p|…`. */
const SCORER_META_KEY = 's|meta';

/** One scorer-level changelog record (`value` null deletes the key). */
export type ScorerChange = PopulationChange;

/** The views of one entity's window, before the decision. */
interface Scored {
  row: WindowAggregateRow;
  st: EntityState;
  /** Deviation of the request count from the entity's own history (null: warming up). */
  main: Deviation | null;
  /** Deviation of the newest slide's request count from its history (null: warming up, or too few requests to matter). */
  onset: Deviation | null;
}

/**
 * Scores each closed window of each entity with three views and a decision policy
 * (detectors/policy.ts) that combines them:
 * - **volume**: the request count against the entity's own history (robust deviation with
 *   Poisson and relative floors), after dividing out the rise of the traffic around it (surge
 *   normalisation by cohort, {@link expectedRises}: a flash crowd lifts people's networks and
 *   browsers together);
 * - **population**: outlierness among the active entities of its type in the same window
 *   (isolation forest, detectors/population.ts, refit in a worker thread);
 * - **shift**: rises of bot-indicative features (auth failures, POSTs, requests per IP) against
 *   the entity's own history.
 *
 * Windows the policy flags are learned neither by the entity's baselines nor by the
 * population, so an attack does not become its own baseline, until it has lasted
 * `adapt_after_windows` windows: then its level is accepted as the entity's new normal (drift
 * adaptation). A new entity in a stream watched for a while has a history of zeros; before the
 * scorer has watched `warmup` windows, no verdicts are given (warm-up).
 *
 * State is bounded: at most `max_entities_per_type` per type, the lightest by decayed traffic
 * evicted first, and entities whose whole history is zero are dropped; the population keeps a
 * bounded reservoir. State is checkpointed for a compacted changelog (Kafka Streams style):
 * {@link takeChanges} per entity, tombstones included, and {@link takeScorerChanges} for the
 * scorer's own; {@link restoreEntity}, {@link restoreScorer} and {@link completeRestore} install
 * them in a fresh scorer, which then scores identically.
 */
export class EntityScorer {
  private readonly state: Record<EntityType, Map<string, EntityState>> = { asn: new Map(), ja4: new Map(), asn_ja4: new Map() };
  /**
   * Entities whose state changed or was dropped since the last {@link takeChanges}; null when
   * built with `trackChanges: false`, since without checkpoints the set would only grow (replay).
   */
  private readonly dirty: Record<EntityType, Set<string>> | null;
  /** Admission order of the next new entity. */
  private nextSeq = 0;
  /** Entities evicted because of the cap (a metric). */
  evictions = 0;
  /** Window slide, ms: how many windows lie between two window starts. */
  private readonly slideMs: number;
  /** Start of the window being scored, or the latest `last` restored before any; -Infinity before both. */
  private now = Number.NEGATIVE_INFINITY;
  /** Start of the first window this scorer (or the one it was restored from) scored: how long the stream has been watched. */
  private since = Number.NaN;
  private sinceDirty = false;
  /** MASS_DECAY^k by repeated multiplication, so that lazily decayed masses equal window-by-window ones. */
  private readonly decayPow: number[] = [1];
  /** Some state restored from a v1 checkpoint has not been scored since. */
  private unknownLast = false;
  readonly modelVersion: string;
  private readonly detectorOptions: DetectorOptions;
  /** The population detector (null when disabled). */
  readonly population: PopulationScorer | null;
  /**
   * Fewest requests in a window's newest slide for the onset view to be worked out: below it,
   * its deviation cannot reach the policy threshold (the spread is at least the noise floor), so
   * it could not decide anything and costs a median for nothing.
   */
  private readonly onsetMin: number;

  constructor(
    readonly config: EntityScorerConfig,
    readonly pipelineVersion: string,
    /**
     * `trackChanges`: record what changed for {@link takeChanges} (the changelog). Default true;
     * false where nothing checkpoints (replay, benchmarks), or the set holds every key ever seen.
     * `slideMs`: the windows' slide (windows.slide_ms), default 10 000: windows must start
     * `slideMs` apart, as the window engine emits them (empty windows included).
     * `trainer`: where population models are fit; default in this thread. The pipeline passes
     * a worker thread's ({@link sharedWorkerTrainer}) and awaits {@link settle} before each window.
     */
    options: { trackChanges?: boolean; slideMs?: number; trainer?: PopulationTrainer } = {},
  ) {
    this.slideMs = options.slideMs ?? 10_000;
    if (!(Number.isSafeInteger(this.slideMs) && this.slideMs > 0)) throw new RangeError(`EntityScorer: slideMs must be a positive integer, got ${this.slideMs}`);
    this.dirty = options.trackChanges === false ? null : { asn: new Set(), ja4: new Set(), asn_ja4: new Set() };
    const d = config.robust_deviation;
    this.detectorOptions = {
      main: RobustDeviation.parseOptions(d),
      count: RobustDeviation.parseOptions(d),
      share: RobustDeviation.parseOptions({ ...d, noise_floor: 'none', relative_floor: 0, min_scale: 0.02 }),
      ratio: RobustDeviation.parseOptions({ ...d, noise_floor: 'none', relative_floor: 0.1, min_scale: 0.05 }),
    };
    const pc = config.population;
    const pol = config.policy;
    // score = z² / (z² + h²) ≥ threshold  ⇔  z ≥ h·√(t / (1 − t)); and z ≤ value / spread.
    const zMin = pol.threshold >= 1 ? Number.POSITIVE_INFINITY : d.half_score_z * Math.sqrt(pol.threshold / (1 - pol.threshold));
    this.onsetMin = zMin * (d.noise_floor === 'poisson' ? Math.max(1, d.min_scale) : d.min_scale);
    this.population = pc.enabled
      ? new PopulationScorer({
          windows: pc.windows,
          perWindow: pc.per_window,
          refitEvery: pc.refit_every,
          minTraining: pc.min_training,
          minRequests: pc.min_requests,
          seed: pc.seed,
          ...(options.trainer ? { trainer: options.trainer } : {}),
        })
      : null;
    this.modelVersion =
      `ensemble/3 rd(h=${d.history} w=${d.warmup} rel=${d.relative_floor})` +
      (pc.enabled ? ` if(w=${pc.windows} n=${pc.per_window} r=${pc.refit_every} s=${pc.seed})` : '') +
      ` t=${pol.threshold} vw=${pol.volume_weight} adapt=${pol.adapt_after_windows} surge=${pol.surge.enabled ? 'on' : 'off'}`;
  }

  /** Entities tracked now, per type. */
  get size(): Record<EntityType, number> {
    return { asn: this.state.asn.size, ja4: this.state.ja4.size, asn_ja4: this.state.asn_ja4.size };
  }

  /** Waits for population fits the next window needs (they run in the trainer); call before {@link scoreWindow}. */
  async settle(): Promise<void> {
    await this.population?.settle();
  }

  /**
   * Scores every entity of a closed window; returns one verdict per entity past warm-up. With a
   * worker-thread trainer, {@link settle} must be awaited first (it throws otherwise when a fit
   * it needs is still running).
   */
  scoreWindow(w: ClosedWindow): Verdict[] {
    this.now = w.windowStart;
    if (Number.isNaN(this.since)) {
      this.since = w.windowStart;
      this.sinceDirty = true;
    }
    this.settleUnknownLast(w.windowStart);
    const history = this.config.robust_deviation.history;
    const watched = Math.min(history, Math.max(0, Math.round((w.windowStart - this.since) / this.slideMs)));
    const scored: Scored[] = [];
    for (const row of w.rows) {
      const map = this.state[row.entity_type];
      let st = map.get(row.entity);
      if (st) {
        // Catch up on the windows it was absent from: zeros learned, mass decayed, as if window by window.
        const absent = this.windowsSince(st) - 1;
        if (absent >= history) {
          // It went quiet long ago; the window-by-window scorer would have dropped it and starts afresh.
          map.delete(row.entity);
          st = undefined;
        } else if (absent > 0) {
          st.mass *= this.decay(absent);
          st.requests.learnRepeated(w.windowStart, 0, absent);
          st.slide.learnRepeated(w.windowStart, 0, absent);
          st.streak = 0;
        }
      }
      if (!st) {
        st = EntityState.fresh(this.nextSeq++, this.detectorOptions);
        // Absent from every window watched so far: that is its history.
        st.requests.assumeZeros(watched);
        st.slide.assumeZeros(watched);
        map.set(row.entity, st);
        if (map.size > this.config.max_entities_per_type) this.evict(row.entity_type, row.entity);
      }
      this.dirty?.[row.entity_type].add(row.entity);
      st.mass = st.mass * MASS_DECAY + row.requests;
      st.last = w.windowStart;
      const main = st.requests.ready ? st.requests.explain(row.requests) : null;
      const onset = main && st.slide.ready && row.requests_last_slide >= this.onsetMin ? st.slide.explain(row.requests_last_slide) : null;
      scored.push({ row, st, main, onset });
    }
    // The rise of the traffic around each entity, over the window and over its newest slide (at
    // the window's rate, so both read against the same typical and the same thresholds): a flash
    // crowd's ramp lifts the newest slide before the window.
    const slidesPerWindow = (w.windowEnd - w.windowStart) / this.slideMs;
    const pairs: (PairTraffic & { slide: number })[] = [];
    for (const x of scored) {
      if (x.row.entity_type !== 'asn_ja4' || !x.main) continue;
      const [asn, ja4] = splitPair(x.row.entity);
      pairs.push({ asn, ja4, requests: x.row.requests, typical: x.main.typical, slide: x.row.requests_last_slide * slidesPerWindow });
    }
    const rises: ExpectedRises = expectedRises(this.config.policy, pairs);
    // Only when some onset was worked out: most windows have none.
    const slideRises: ExpectedRises | null = scored.some((x) => x.onset !== null)
      ? expectedRises(this.config.policy, pairs.map((p) => ({ ...p, requests: p.slide })))
      : null;
    const population = this.population?.score(w.rows) ?? new Map<WindowAggregateRow, PopulationScore>();
    const out: Verdict[] = [];
    const flagged = new Set<WindowAggregateRow>();
    for (const x of scored) {
      const rise = rises[x.row.entity_type].get(x.row.entity) ?? 1;
      const slideRise = slideRises?.[x.row.entity_type].get(x.row.entity) ?? 1;
      const verdict = this.scoreRow(x, rise, slideRise, population.get(x.row) ?? null);
      if (verdict) out.push(verdict);
      if (verdict?.anomalous) flagged.add(x.row);
    }
    this.population?.learn(w.windowStart, w.rows, flagged);
    // An entity absent from `history` windows has learned nothing but zeros: drop it (a tombstone).
    // Absent entities are otherwise left alone, so they cost nothing in the changelog.
    for (const type of ENTITY_TYPES) {
      const map = this.state[type];
      for (const [entity, st] of map) {
        if (this.windowsSince(st) < history) continue;
        map.delete(entity);
        this.dirty?.[type].add(entity);
      }
    }
    return out;
  }

  /** Windows from `st.last` to the current one (1 for the window right after it). */
  private windowsSince(st: EntityState): number {
    return Math.max(0, Math.round((this.now - st.last) / this.slideMs));
  }

  private decay(k: number): number {
    const pow = this.decayPow;
    while (pow.length <= k) pow.push((pow[pow.length - 1] as number) * MASS_DECAY);
    return pow[k] as number;
  }

  /** Mass as of the current window, for ranking entities last seen in different windows. */
  private massNow(st: EntityState): number {
    return Number.isNaN(st.last) ? st.mass : st.mass * this.decay(this.windowsSince(st));
  }

  /** States restored from v1 checkpoints were current as of the window before the first one scored after. */
  private settleUnknownLast(windowStart: number): void {
    if (!this.unknownLast) return;
    this.unknownLast = false;
    for (const type of ENTITY_TYPES) for (const st of this.state[type].values()) if (Number.isNaN(st.last)) st.last = windowStart - this.slideMs;
  }

  /**
   * Evicts the tenth of the entities with the least decayed traffic, sparing the one just
   * admitted. Unlike LRU, a flood of fresh one-request keys (a new JA4 per request) cannot push
   * out the baselines of heavy entities: they always outweigh the flood. Batched, so the sort
   * is amortised over a tenth of the cap.
   */
  private evict(type: EntityType, keep: string): void {
    const map = this.state[type];
    const n = map.size - Math.floor(this.config.max_entities_per_type * 0.9);
    // Ties of mass go to the earlier admitted (the map's own order before checkpoints existed).
    const candidates: { entity: string; mass: number; seq: number }[] = [];
    for (const [entity, st] of map) if (entity !== keep) candidates.push({ entity, mass: this.massNow(st), seq: st.seq });
    candidates.sort((a, b) => a.mass - b.mass || a.seq - b.seq);
    for (let i = 0; i < n && i < candidates.length; i++) {
      const entity = (candidates[i] as { entity: string }).entity;
      map.delete(entity);
      this.dirty?.[type].add(entity);
    }
    this.evictions += Math.min(n, candidates.length);
  }

  /**
   * JSON-safe snapshot of one entity's state ({@link EntityStateJSON}), or null when the entity
   * is not tracked. Restoring it with {@link restoreEntity} gives identical verdicts from then on.
   */
  entityState(type: EntityType, entity: string): EntityStateJSON | null {
    return this.mapOf(type, 'entityState').get(entity)?.toJSON() ?? null;
  }

  /**
   * Installs a snapshot from {@link entityState} (replacing any state of the entity); throws a
   * TypeError naming what is wrong. The entity is not marked changed, since its state is what the
   * changelog already holds, but entities evicted to make room (max_entities_per_type) are.
   */
  restoreEntity(type: EntityType, entity: string, state: unknown): void {
    const map = this.mapOf(type, 'restoreEntity');
    const st = EntityState.fromJSON(state, this.detectorOptions);
    map.set(entity, st);
    if (Number.isNaN(st.last)) this.unknownLast = true;
    else if (st.last > this.now) this.now = st.last;
    this.nextSeq = Math.max(this.nextSeq, st.seq + 1);
    if (map.size > this.config.max_entities_per_type) this.evict(type, entity);
  }

  /**
   * Drops an entity's state without a tombstone, e.g. when its partition moves to another
   * process, which restores it from the changelog. Any change not yet taken is discarded, so
   * checkpoint ({@link takeChanges}) first. Returns whether the entity was tracked.
   */
  forgetEntity(type: EntityType, entity: string): boolean {
    const map = this.mapOf(type, 'forgetEntity');
    this.dirty?.[type].delete(entity);
    return map.delete(entity);
  }

  /** The map of a type that may come from outside (a changelog key). */
  private mapOf(type: EntityType, method: string): Map<string, EntityState> {
    if (!ENTITY_TYPES.includes(type)) malformed(`EntityScorer.${method}`, `unknown entity type ${JSON.stringify(type)}; known: ${ENTITY_TYPES.join(', ')}`);
    return this.state[type];
  }

  /**
   * Every entity whose state changed since the last call, with its snapshot, or null when it
   * was dropped (gone quiet or evicted): a tombstone for the compacted changelog. Clears the
   * set. Snapshots are taken here, not when the state changes, so marking costs a Set insert.
   * Throws if the scorer was built with `trackChanges: false`.
   */
  takeChanges(): EntityChange[] {
    const dirty = this.dirty;
    if (!dirty) throw new Error('EntityScorer.takeChanges: this scorer was built with { trackChanges: false }');
    const out: EntityChange[] = [];
    for (const type of ENTITY_TYPES) {
      for (const entity of dirty[type]) out.push({ type, entity, state: this.entityState(type, entity) });
      dirty[type].clear();
    }
    return out;
  }

  /**
   * Scorer-level changelog records since the last call: `s|meta` (when the scorer started
   * watching) and the population's window samples and fit schedule (`p|…`).
   */
  takeScorerChanges(): ScorerChange[] {
    const out: ScorerChange[] = this.population?.takeChanges() ?? [];
    if (this.sinceDirty) {
      out.push({ key: SCORER_META_KEY, value: JSON.stringify({ v: 1, since: this.since }) });
      this.sinceDirty = false;
    }
    return out;
  }

  /** Whether a changelog key is a scorer-level one ({@link takeScorerChanges}). */
  static isScorerKey(key: string): boolean {
    return key === SCORER_META_KEY || key.startsWith(POPULATION_KEY);
  }

  /** Installs a scorer-level record read back; call {@link completeRestore} after the last. Throws a TypeError naming what is wrong. */
  restoreScorer(key: string, value: string): void {
    if (key === SCORER_META_KEY) {
      const o = JSON.parse(value) as { v?: unknown; since?: unknown };
      if (o.v !== 1 || typeof o.since !== 'number' || !Number.isSafeInteger(o.since)) malformed('EntityScorer.restoreScorer', `'${key}' must be {v: 1, since: <epoch ms>}, got ${value.slice(0, 100)}`);
      this.since = o.since;
      return;
    }
    if (!this.population) return; // population disabled since the checkpoint: its records are ignored
    this.population.restore(key, value);
  }

  /** Finishes a restore (refits the population's model from its restored samples). */
  completeRestore(): void {
    this.population?.completeRestore();
  }

  private scoreRow(x: Scored, rise: number, slideRise: number, pop: PopulationScore | null): Verdict | null {
    const { row, st, main } = x;
    const values = SECONDARY.map((f) => f.of(row));
    const learnSecondary = (): void => values.forEach((v, i) => (st.secondary[i] as RobustDeviation).learn(row.window_start, v));
    const learnVolume = (): void => {
      st.requests.learn(row.window_start, row.requests);
      st.slide.learn(row.window_start, row.requests_last_slide);
    };
    if (!main) {
      // Warm-up: no verdict until a baseline exists.
      learnVolume();
      learnSecondary();
      return null;
    }
    const policy = this.config.policy;
    // Surge normalisation: judged against typical × the common rise of the traffic around it.
    const windowVol = rise > 1 ? st.requests.at(main, row.requests / rise) : main;
    // The onset view: a burst that began in the newest slide is most of that slide and a sliver
    // of the window, so the volume is the larger of the two deviations.
    const onset = x.onset && slideRise > 1 ? st.slide.at(x.onset, row.requests_last_slide / slideRise) : x.onset;
    const vol = onset && onset.score > windowVol.score ? onset : windowVol;
    const detectors: Record<string, number> = { 'robust_deviation.requests': main.score, volume: vol.score };
    if (onset) detectors.onset = onset.score;
    if (pop) detectors.population = pop.score;
    // Secondary baselines only matter when the volume could make the window anomalous; scoring
    // them for calm ones would cost a median per feature per entity per window for nothing.
    let secondary: { f: (typeof SECONDARY)[number]; value: number; dev: Deviation }[] = [];
    let shift = 0;
    if (vol.score >= policy.threshold && row.requests >= policy.min_requests) {
      secondary = SECONDARY.map((f, i) => ({ f, value: values[i] as number, dev: (st.secondary[i] as RobustDeviation).explain(values[i] as number) }));
      for (const s2 of secondary) if (s2.f.shift) shift = Math.max(shift, s2.dev.score);
      detectors.shift = shift;
    }
    const d = decide(policy, { volume: vol.score, population: pop?.score ?? null, shift, requests: row.requests });
    let anomalous = d.anomalous;
    let adapted = false;
    if (anomalous) {
      st.streak++;
      if (policy.adapt_after_windows > 0 && st.streak >= policy.adapt_after_windows) {
        // Drift adaptation: the level has held long enough to be this entity's normal.
        adapted = true;
        anomalous = false;
        st.streak = 0;
        const warmup = this.config.robust_deviation.warmup;
        st.requests = new RobustDeviation(this.detectorOptions.main);
        st.requests.learnRepeated(row.window_start, row.requests, warmup);
        st.slide = new RobustDeviation(this.detectorOptions.main);
        st.slide.learnRepeated(row.window_start, row.requests_last_slide, warmup);
        learnSecondary();
      }
    } else {
      st.streak = 0;
      learnVolume();
      learnSecondary();
    }
    const features: Record<string, number> = { requests: row.requests, requests_last_slide: row.requests_last_slide };
    const typical: Record<string, number> = { requests: main.typical };
    if (onset) typical.requests_last_slide = onset.typical;
    SECONDARY.forEach((f, i) => (features[f.name] = values[i] as number));
    for (const s2 of secondary) typical[s2.f.name] = s2.dev.typical;
    if (rise > 1) features.expected_rise = rise;
    return {
      verdict_id: verdictId(row.entity_type, row.entity, row.window_start, row.window_end),
      entity_type: row.entity_type,
      entity: row.entity,
      scope: scopeOf(row.entity_type, row.entity),
      window_start: row.window_start,
      window_end: row.window_end,
      score: d.score,
      anomalous,
      detectors,
      reasons: this.reasons(row, main, windowVol, onset, rise, slideRise, pop, secondary, anomalous, adapted),
      features,
      typical,
      requests: row.requests,
      model_version: this.modelVersion,
      pipeline_version: this.pipelineVersion,
    };
  }

  private reasons(
    row: WindowAggregateRow,
    main: Deviation,
    vol: Deviation,
    onset: Deviation | null,
    rise: number,
    slideRise: number,
    pop: PopulationScore | null,
    secondary: { f: (typeof SECONDARY)[number]; value: number; dev: Deviation }[],
    anomalous: boolean,
    adapted: boolean,
  ): string[] {
    const secs = (row.window_end - row.window_start) / 1000;
    const ratio = main.typical > 0 ? `${(row.requests / main.typical).toFixed(1)}x typical` : 'from a typical of 0';
    const out = [
      `requests ${row.requests} in ${secs} s vs typical ${fmt(main.typical)} (median of last ${main.n} windows, spread ${fmt(main.spread)}): ` +
        `${ratio}, ${main.z >= 0 ? '+' : ''}${main.z.toFixed(1)} robust deviations`,
    ];
    if (rise > 1.05) {
      out.push(`surge: the traffic around it (same network, same fingerprint) rose ${rise.toFixed(2)}x; against that, ${vol.z >= 0 ? '+' : ''}${vol.z.toFixed(1)} robust deviations`);
    }
    if (onset && onset.score > vol.score) {
      // The onset view decided the volume: say what the newest slide held.
      const slideSecs = this.slideMs / 1000;
      const slideRatio = onset.typical > 0 ? `${(row.requests_last_slide / onset.typical).toFixed(1)}x typical` : 'from a typical of 0';
      const against = slideRise > 1.05 ? `; the traffic around it rose ${slideRise.toFixed(2)}x` : '';
      out.push(
        `onset: ${row.requests_last_slide} requests in the last ${slideSecs} s vs typical ${fmt(onset.typical)} (median of last ${onset.n} slides, spread ${fmt(onset.spread)}): ` +
          `${slideRatio}${against}, ${onset.z >= 0 ? '+' : ''}${onset.z.toFixed(1)} robust deviations`,
      );
    }
    if (adapted) {
      out.push(`level held for ${this.config.policy.adapt_after_windows} anomalous windows: accepted as this entity's new normal (drift adaptation)`);
    }
    if (!anomalous) return out;
    if (pop) {
      const top = pop.reasons.map((r) => `${r.feature} ${fmtFeature(r.feature, r.value)} vs ${fmtFeature(r.feature, r.typical)}`).join(', ');
      out.push(`population: outlier among active ${row.entity_type} entities this window (score ${pop.score.toFixed(2)})${top ? `: ${top}` : ''}`);
    }
    for (const s2 of secondary) {
      if (s2.dev.n > 0 && Math.abs(s2.dev.z) >= 3 && s2.value !== s2.dev.typical) {
        const pct = s2.f.unit === 'share';
        out.push(`${s2.f.name} ${fmt(s2.value, pct)} vs typical ${fmt(s2.dev.typical, pct)}`);
      }
    }
    return out;
  }
}

/** A population feature's value in words: log-scaled counts back to counts, shares as percentages. */
function fmtFeature(name: string, v: number): string {
  if (name.startsWith('log_')) return fmt(Math.round(Math.expm1(v) * 10) / 10);
  if (name.endsWith('_share')) return fmt(v, true);
  return fmt(v);
}
