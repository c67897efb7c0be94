import { z } from 'zod';
import type { EntityType, WindowAggregateRow } from '../consumers/aggregates.js';
import type { ClosedWindow } from '../consumers/windows.js';
import { decide, decisionPolicySchema } from './policy.js';
import { RobustDeviation, robustDeviationOptionsSchema, type Deviation } from './robust-deviation.js';
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

class EntityState {
  /** Exponentially decayed requests per window: what eviction keeps the heaviest of. */
  mass = 0;
  readonly requests: RobustDeviation;
  readonly secondary: RobustDeviation[];
  constructor(options: EntityScorerConfig['robust_deviation']) {
    this.requests = new RobustDeviation(options);
    const plain = { ...options, noise_floor: 'none' as const };
    this.secondary = SECONDARY.map(() => new RobustDeviation(plain));
  }
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
 */
export class EntityScorer {
  private readonly state: Record<EntityType, Map<string, EntityState>> = { asn: new Map(), ja4: new Map(), asn_ja4: new Map() };
  /** Entities evicted because of the cap (a metric). */
  evictions = 0;
  readonly modelVersion: string;

  constructor(
    readonly config: EntityScorerConfig,
    readonly pipelineVersion: string,
  ) {
    const d = config.robust_deviation;
    this.modelVersion = `robust_deviation/1 h=${d.history} w=${d.warmup} t=${config.policy.threshold}`;
  }

  /** Entities tracked now, per type. */
  get size(): Record<EntityType, number> {
    return { asn: this.state.asn.size, ja4: this.state.ja4.size, asn_ja4: this.state.asn_ja4.size };
  }

  /** Scores every entity of a closed window; returns one verdict per entity past warm-up. */
  scoreWindow(w: ClosedWindow): Verdict[] {
    const out: Verdict[] = [];
    const seen: Record<EntityType, Set<string>> = { asn: new Set(), ja4: new Set(), asn_ja4: new Set() };
    for (const row of w.rows) {
      seen[row.entity_type].add(row.entity);
      const map = this.state[row.entity_type];
      let st = map.get(row.entity);
      if (!st) {
        st = new EntityState(this.config.robust_deviation);
        map.set(row.entity, st);
        if (map.size > this.config.max_entities_per_type) this.evict(map, row.entity);
      }
      st.mass = st.mass * MASS_DECAY + row.requests;
      const verdict = this.scoreRow(row, st);
      if (verdict) out.push(verdict);
    }
    // An entity absent from this window had zero requests in it: that is part of its history.
    for (const type of ['asn', 'ja4', 'asn_ja4'] as const) {
      for (const [entity, st] of this.state[type]) {
        if (seen[type].has(entity)) continue;
        st.mass *= MASS_DECAY;
        st.requests.learn(w.windowStart, 0);
        if (st.requests.quiet) this.state[type].delete(entity);
      }
    }
    return out;
  }

  /**
   * Evicts the tenth of the entities with the least decayed traffic, sparing the one just
   * admitted. Unlike LRU, a flood of fresh one-request keys (a new JA4 per request) cannot push
   * out the baselines of heavy entities: they always outweigh the flood. Batched, so the sort
   * is amortised over a tenth of the cap.
   */
  private evict(map: Map<string, EntityState>, keep: string): void {
    const n = map.size - Math.floor(this.config.max_entities_per_type * 0.9);
    const candidates = [...map].filter(([k]) => k !== keep).sort((a, b) => a[1].mass - b[1].mass);
    for (let i = 0; i < n && i < candidates.length; i++) map.delete((candidates[i] as [string, EntityState])[0]);
    this.evictions += Math.min(n, candidates.length);
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
