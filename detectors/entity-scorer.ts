import { z } from 'zod';
import type { EntityType, WindowAggregateRow } from '../consumers/aggregates.js';
import type { ClosedWindow } from '../consumers/windows.js';
import { decide, decisionPolicySchema } from './policy.js';
import { RobustDeviation, robustDeviationOptionsSchema, type Deviation, type RobustDeviationOptions, type RobustDeviationBaselineJSON } from './robust-deviation.js';
import { verdictId, type Verdict } from './verdict.js';

/** Configuration of the per-entity temporal scorer. */
export const entityScorerSchema = z
  .object({
    /** Baseline of each entity's request count: a robust deviation with a Poisson noise floor. */
    robust_deviation: robustDeviationOptionsSchema.prefault({ history: 60, warmup: 18, noise_floor: 'poisson' }),
    /** Decision policy. */
    policy: decisionPolicySchema.prefault({}),
    /** Most entities tracked per entity type; beyond it the tenth with the least recent traffic is evicted. Default 50 000. */
    max_entities_per_type: z.number().int().positive().default(50_000),
  })
  .strict();

/** Validated scorer configuration. */
export type EntityScorerConfig = z.infer<typeof entityScorerSchema>;

/** Secondary features: tracked per entity so that reasons can say what else departed from typical. */
const SECONDARY: { name: string; of: (r: WindowAggregateRow) => number; pct?: boolean }[] = [
  { name: 'unique_ips', of: (r) => r.unique_ips },
  { name: 'requests_per_ip_max', of: (r) => r.requests_per_ip_max },
  { name: 'auth_failure_share', of: (r) => (r.requests ? (r.status_401 + r.status_403) / r.requests : 0), pct: true },
  { name: 'post_share', of: (r) => (r.requests ? r.post_requests / r.requests : 0), pct: true },
  { name: 'unique_paths', of: (r) => r.unique_paths },
];

/** Per-window decay of an entity's traffic mass (half-life about 7 windows). */
const MASS_DECAY = 0.9;

const ENTITY_TYPES = ['asn', 'ja4', 'asn_ja4'] as const;

/**
 * Checkpoint form of one entity's state (a value of the scorer's changelog topic, keyed by
 * entity type and entity). `seq` is the entity's admission order, which breaks ties of `mass`
 * when evicting; `secondary` is keyed by feature name.
 */
export interface EntityStateJSON {
  /** 2; version 1 (no `last`) is still read. */
  v: 1 | 2;
  /** Admission order among the entities of the scorer that wrote it (an integer ≥ 0). */
  seq: number;
  /** Decayed requests per window, as of window `last`. */
  mass: number;
  /** Start of the last window learned, epoch ms (absent in version 1). */
  last?: number;
  /** Baseline of the request count. */
  requests: RobustDeviationBaselineJSON;
  /** Baselines of the secondary features, by name (unique_ips, requests_per_ip_max, …). */
  secondary: Record<string, RobustDeviationBaselineJSON>;
}

/** One entry of {@link EntityScorer.takeChanges}: `state` null is a tombstone (the entity was dropped). */
export interface EntityChange {
  type: EntityType;
  entity: string;
  state: EntityStateJSON | null;
}

/** Detector options validated once per scorer: the request baseline's, and the secondary features' (no Poisson floor). */
interface DetectorOptions {
  main: RobustDeviationOptions;
  plain: RobustDeviationOptions;
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
  constructor(
    /** Admission order: eviction sorts by mass, then by this, which a restored map's order cannot give. */
    readonly seq: number,
    readonly requests: RobustDeviation,
    readonly secondary: RobustDeviation[],
  ) {}

  static fresh(seq: number, options: DetectorOptions): EntityState {
    return new EntityState(seq, new RobustDeviation(options.main), SECONDARY.map(() => new RobustDeviation(options.plain)));
  }

  toJSON(): EntityStateJSON {
    const secondary: Record<string, RobustDeviationBaselineJSON> = {};
    SECONDARY.forEach((f, i) => (secondary[f.name] = (this.secondary[i] as RobustDeviation).baselineJSON()));
    const requests = this.requests.baselineJSON();
    if (Number.isNaN(this.last)) return { v: 1, seq: this.seq, mass: this.mass, requests, secondary }; // restored from v1, not scored since
    return { v: 2, seq: this.seq, mass: this.mass, last: this.last, requests, secondary };
  }

  static fromJSON(v: unknown, options: DetectorOptions): EntityState {
    const W = 'EntityScorer.restoreEntity';
    if (typeof v !== 'object' || v === null || Array.isArray(v)) malformed(W, 'expected an object');
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!STATE_KEYS.has(k)) malformed(W, `unknown key '${k}'`);
    if (o.v !== 1 && o.v !== 2) malformed(W, `unsupported version 'v': ${JSON.stringify(o.v)} (expected 1 or 2)`);
    // v1 had no 'last': every entity learned every window, so it was current as of the checkpoint.
    if (o.v === 2 && (typeof o.last !== 'number' || !Number.isSafeInteger(o.last))) malformed(W, `'last' must be an integer (epoch ms), got ${JSON.stringify(o.last)}`);
    if (o.v === 1 && 'last' in o) malformed(W, "unknown key 'last' in a v1 state");
    if (typeof o.seq !== 'number' || !Number.isSafeInteger(o.seq) || o.seq < 0) malformed(W, `'seq' must be a non-negative integer, got ${JSON.stringify(o.seq)}`);
    if (typeof o.mass !== 'number' || !Number.isFinite(o.mass) || o.mass < 0) malformed(W, `'mass' must be a finite number ≥ 0, got ${JSON.stringify(o.mass)}`);
    const requests = RobustDeviation.fromBaselineJSON(options.main, o.requests, `${W}: 'requests'`);
    const sec = o.secondary;
    if (typeof sec !== 'object' || sec === null || Array.isArray(sec)) malformed(W, "'secondary' must be an object");
    const byName = sec as Record<string, unknown>;
    for (const k of Object.keys(byName)) {
      if (!SECONDARY.some((f) => f.name === k)) malformed(W, `unknown secondary feature '${k}'; known: ${SECONDARY.map((f) => f.name).join(', ')}`);
    }
    const secondary = SECONDARY.map((f) => {
      if (!(f.name in byName)) malformed(W, `'secondary' lacks '${f.name}'`);
      return RobustDeviation.fromBaselineJSON(options.plain, byName[f.name], `${W}: 'secondary.${f.name}'`);
    });
    const st = new EntityState(o.seq, requests, secondary);
    st.mass = o.mass;
    st.last = o.v === 2 ? (o.last as number) : Number.NaN;
    return st;
  }
}

const STATE_KEYS = new Set(['v', 'seq', 'mass', 'last', 'requests', 'secondary']);

function malformed(where: string, message: string): never {
  throw new TypeError(`${where}: ${message}`);
}

function fmt(v: number, pct = false): string {
  if (pct) return `${(v * 100).toFixed(v < 0.1 ? 1 : 0)}%`;
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

/**
 * Scores each closed window of each entity against that entity's own history of request
 * counts. Windows the policy flags are not learned, so an attack does not become its own
 * baseline. State is bounded: at most `max_entities_per_type` per type, the lightest by decayed
 * traffic evicted first, and entities whose whole history is zero are dropped.
 *
 * State is checkpointed per entity for a compacted changelog (Kafka Streams style):
 * {@link takeChanges} gives what changed since the last checkpoint, tombstones included, and
 * {@link restoreEntity} installs it in a fresh scorer, which then scores identically.
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
  /** MASS_DECAY^k by repeated multiplication, so that lazily decayed masses equal window-by-window ones. */
  private readonly decayPow: number[] = [1];
  /** Some state restored from a v1 checkpoint has not been scored since. */
  private unknownLast = false;
  readonly modelVersion: string;
  private readonly detectorOptions: DetectorOptions;

  constructor(
    readonly config: EntityScorerConfig,
    readonly pipelineVersion: string,
    /**
     * `trackChanges`: record what changed for {@link takeChanges} (the changelog). Default true;
     * false where nothing checkpoints (replay, benchmarks), or the set holds every key ever seen.
     * `slideMs`: the windows' slide (windows.slide_ms), default 10 000: windows must start
     * `slideMs` apart, as the window engine emits them (empty windows included).
     */
    options: { trackChanges?: boolean; slideMs?: number } = {},
  ) {
    this.slideMs = options.slideMs ?? 10_000;
    if (!(Number.isSafeInteger(this.slideMs) && this.slideMs > 0)) throw new RangeError(`EntityScorer: slideMs must be a positive integer, got ${this.slideMs}`);
    this.dirty = options.trackChanges === false ? null : { asn: new Set(), ja4: new Set(), asn_ja4: new Set() };
    const d = config.robust_deviation;
    this.detectorOptions = {
      main: RobustDeviation.parseOptions(d),
      plain: RobustDeviation.parseOptions({ ...d, noise_floor: 'none' }),
    };
    this.modelVersion = `robust_deviation/1 h=${d.history} w=${d.warmup} t=${config.policy.threshold}`;
  }

  /** Entities tracked now, per type. */
  get size(): Record<EntityType, number> {
    return { asn: this.state.asn.size, ja4: this.state.ja4.size, asn_ja4: this.state.asn_ja4.size };
  }

  /** Scores every entity of a closed window; returns one verdict per entity past warm-up. */
  scoreWindow(w: ClosedWindow): Verdict[] {
    this.now = w.windowStart;
    this.settleUnknownLast(w.windowStart);
    const out: Verdict[] = [];
    const history = this.config.robust_deviation.history;
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
        }
      }
      if (!st) {
        st = EntityState.fresh(this.nextSeq++, this.detectorOptions);
        map.set(row.entity, st);
        if (map.size > this.config.max_entities_per_type) this.evict(row.entity_type, row.entity);
      }
      this.dirty?.[row.entity_type].add(row.entity);
      st.mass = st.mass * MASS_DECAY + row.requests;
      st.last = w.windowStart;
      const verdict = this.scoreRow(row, st);
      if (verdict) out.push(verdict);
    }
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

  private scoreRow(row: WindowAggregateRow, st: EntityState): Verdict | null {
    const main = st.requests.explain(row.requests);
    const values = SECONDARY.map((f) => f.of(row));
    const learnAll = (): void => {
      st.requests.learn(row.window_start, row.requests);
      values.forEach((v, i) => (st.secondary[i] as RobustDeviation).learn(row.window_start, v));
    };
    if (!st.requests.ready) {
      learnAll();
      return null;
    }
    const anomalous = decide(this.config.policy, main.score, row.requests);
    const features: Record<string, number> = { requests: row.requests };
    const typical: Record<string, number> = { requests: main.typical };
    SECONDARY.forEach((f, i) => (features[f.name] = values[i] as number));
    let secondary: { f: (typeof SECONDARY)[number]; value: number; dev: Deviation }[] = [];
    if (anomalous) {
      // Secondary baselines only explain a flagged window; scoring them for calm ones would cost
      // a median per feature per entity per window for nothing.
      secondary = SECONDARY.map((f, i) => ({ f, value: values[i] as number, dev: (st.secondary[i] as RobustDeviation).explain(values[i] as number) }));
      for (const s of secondary) typical[s.f.name] = s.dev.typical;
    } else {
      learnAll();
    }
    return {
      verdict_id: verdictId(row.entity_type, row.entity, row.window_start, row.window_end),
      entity_type: row.entity_type,
      entity: row.entity,
      window_start: row.window_start,
      window_end: row.window_end,
      score: main.score,
      anomalous,
      detectors: { 'robust_deviation.requests': main.score },
      reasons: this.reasons(row, main, secondary, anomalous),
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
    secondary: { f: (typeof SECONDARY)[number]; value: number; dev: Deviation }[],
    anomalous: boolean,
  ): string[] {
    const secs = (row.window_end - row.window_start) / 1000;
    const ratio = main.typical > 0 ? `${(row.requests / main.typical).toFixed(1)}x typical` : 'from a typical of 0';
    const out = [
      `requests ${row.requests} in ${secs} s vs typical ${fmt(main.typical)} (median of last ${main.n} windows, spread ${fmt(main.spread)}): ` +
        `${ratio}, ${main.z >= 0 ? '+' : ''}${main.z.toFixed(1)} robust deviations`,
    ];
    if (!anomalous) return out;
    for (const s of secondary) {
      if (s.dev.n > 0 && Math.abs(s.dev.z) >= 3 && s.value !== s.dev.typical) {
        out.push(`${s.f.name} ${fmt(s.value, s.f.pct)} vs typical ${fmt(s.dev.typical, s.f.pct)}`);
      }
    }
    return out;
  }
}
