import { EntityAggregate, type EntityType, type WindowAggregateRow } from '../../consumers/aggregates.js';
import { scopeOf, verdictId, type Verdict } from '../../detectors/verdict.js';
import type { RuleChange } from '../../rules/lifecycle.js';
import type { EdgeRule } from '../../schemas/index.js';
import { JA4_APP, JA4_BOT, JA4_BROWSER } from './helpers.js';

/**
 * Known verdicts, window aggregates and rule changes for the analyst queries of
 * docs/analysts.md, placed relative to `nowMs` so that "the last hour" holds them. The doc's
 * example values (ASN 64512, JA4_BOT, their pair, ASN 4200000001) are entities here.
 *
 * Time line: 240 windows of 60 s every 10 s, window i starting at base + i·10 s, where base is
 * 45 min before `nowMs` rounded down to the minute (so window starts are whole minutes every
 * sixth window, and every window is at least 4 min old). Plus one window 3 days earlier.
 *
 * - asn 64512, its pair with JA4_BOT and JA4_BOT itself: an attack in windows 120-131; the pair
 *   gets a rule (renewed 12 times, then expired). The ASN and the pair were flagged 3 days ago
 *   too (a rule then as well), so they are not new today.
 * - asn 3320: a flash crowd in windows 180-185 (surge reasons); flagged once, in window 183;
 *   its rule expired without renewal.
 * - asn 4200000001, its pair with JA4_APP and JA4_APP: an attack in windows 230-239, driven by
 *   the population view; the pair's rule is in force now. The ASN's pair with JA4_BROWSER is a
 *   steady population outlier that is never flagged.
 * - JA4_NOISY: flagged alone in windows 10, 80 and 150, each time a new rule that expires.
 * - JA4_SCAN: appears at window 220, flagged once in window 225; its rule is deleted as calm
 *   before its expiry, which is still ahead.
 * - Windows before 120 are scored by model A / 0.1.0, the others by model B / 0.2.0.
 */
export const JA4_NOISY = 't13d311000_e8f1e7e78f70_d41ae481755e';
export const JA4_SCAN = 't13d0812h1_85036bcba153_b26ce05bbdaa';
export const MODEL_A = 'ensemble/3 rd(h=60 w=18 rel=0.1) t=0.8 surge=on';
export const MODEL_B = 'ensemble/3 rd(h=60 w=18 rel=0.1) t=0.75 surge=on';

const WINDOWS = 240;
const TTL_MS = 600_000;
const CALM_MS = 120_000;

interface Flag {
  score: number;
  volume: number;
  population: number;
  shift: number;
}

interface EntitySpec {
  type: EntityType;
  entity: string;
  /** Windows the entity has a row for. */
  from: number;
  /** Requests in window i. */
  requests: (i: number) => number;
  /** Typical requests (the baseline). */
  typical: number;
  /** The flag of window i, if flagged. */
  flag: (i: number) => Flag | null;
  /** Population score of a calm window. */
  calmPopulation: number;
  /** Whether window i's reasons carry a surge line. */
  surge: (i: number) => boolean;
  /** Attack windows (for the aggregates' POSTs and 401s). */
  attack: (i: number) => boolean;
}

const within = (a: number, b: number) => (i: number) => i >= a && i <= b;
const never = (): boolean => false;
const noFlag = (): null => null;

export const SPECS: EntitySpec[] = (() => {
  const bot = within(120, 131);
  const app = within(230, 239);
  const crowd = within(180, 185);
  const noisy = (i: number) => i === 10 || i === 80 || i === 150;
  const s = (p: Partial<EntitySpec> & Pick<EntitySpec, 'type' | 'entity' | 'requests' | 'typical'>): EntitySpec => ({
    from: 0, flag: noFlag, calmPopulation: 0.2, surge: never, attack: never, ...p,
  });
  return [
    s({ type: 'asn', entity: '64512', typical: 100, requests: (i) => (bot(i) ? 900 : 100), attack: bot,
      flag: (i) => (bot(i) ? { score: 0.94, volume: 0.95, population: 0.4, shift: 0.85 } : null) }),
    s({ type: 'asn_ja4', entity: `64512|${JA4_BOT}`, typical: 10, requests: (i) => (bot(i) ? 810 : 10), attack: bot,
      flag: (i) => (bot(i) ? { score: 0.97, volume: 0.98, population: 0.7, shift: 0.9 } : null) }),
    s({ type: 'asn_ja4', entity: `64512|${JA4_BROWSER}`, typical: 90, requests: () => 90 }),
    s({ type: 'ja4', entity: JA4_BOT, typical: 10, requests: (i) => (bot(i) ? 810 : 10), attack: bot,
      flag: (i) => (bot(i) ? { score: 0.91, volume: 0.93, population: 0.6, shift: 0.8 } : null) }),
    s({ type: 'ja4', entity: JA4_BROWSER, typical: 350, requests: (i) => (crowd(i) ? 750 : 350), surge: crowd }),
    s({ type: 'asn', entity: '3320', typical: 250, requests: (i) => (crowd(i) ? 750 : 250), surge: crowd,
      flag: (i) => (i === 183 ? { score: 0.82, volume: 0.84, population: 0.3, shift: 0.2 } : null) }),
    s({ type: 'asn_ja4', entity: `3320|${JA4_BROWSER}`, typical: 200, requests: (i) => (crowd(i) ? 600 : 200), surge: crowd }),
    s({ type: 'asn', entity: '4200000001', typical: 100, requests: (i) => (app(i) ? 700 : 100), attack: app,
      flag: (i) => (app(i) ? { score: 0.9, volume: 0.9, population: 0.96, shift: 0.5 } : null) }),
    s({ type: 'asn_ja4', entity: `4200000001|${JA4_APP}`, typical: 40, requests: (i) => (app(i) ? 640 : 40), attack: app,
      flag: (i) => (app(i) ? { score: 0.93, volume: 0.92, population: 0.97, shift: 0.6 } : null) }),
    s({ type: 'asn_ja4', entity: `4200000001|${JA4_BROWSER}`, typical: 60, requests: () => 60, calmPopulation: 0.95 }),
    s({ type: 'ja4', entity: JA4_APP, typical: 40, requests: (i) => (app(i) ? 640 : 40), attack: app,
      flag: (i) => (app(i) ? { score: 0.88, volume: 0.89, population: 0.92, shift: 0.4 } : null) }),
    s({ type: 'ja4', entity: JA4_NOISY, typical: 20, requests: (i) => (noisy(i) ? 90 : 20),
      flag: (i) => (noisy(i) ? { score: 0.85, volume: 0.81, population: 0.5, shift: 0.88 } : null) }),
    s({ type: 'ja4', entity: JA4_SCAN, from: 220, typical: 50, requests: (i) => (i === 225 ? 300 : 50),
      flag: (i) => (i === 225 ? { score: 0.86, volume: 0.87, population: 0.8, shift: 0.3 } : null) }),
  ];
})();

export interface Fixture {
  /** Start of window 0, epoch ms. */
  base: number;
  /** Start of the window 3 days before, epoch ms. */
  old: number;
  windowStart: (i: number) => number;
  windowEnd: (i: number) => number;
  verdicts: Verdict[];
  aggregates: WindowAggregateRow[];
  rules: RuleChange[];
}

function verdictOf(spec: EntitySpec, start: number, i: number, model: string, pipeline: string, flagOverride?: Flag): Verdict {
  const end = start + 60_000;
  const flag = flagOverride ?? spec.flag(i);
  const requests = flagOverride ? spec.requests(120) : spec.requests(i);
  const detectors: Record<string, number> = flag
    ? { 'robust_deviation.requests': flag.volume, volume: flag.volume, onset: Math.round((flag.volume - 0.1) * 100) / 100, population: flag.population, shift: flag.shift }
    : { 'robust_deviation.requests': 0.1, volume: 0.1, onset: 0.05, population: spec.calmPopulation };
  const ratio = requests / spec.typical;
  const reasons = [
    `requests ${requests} in 60 s vs typical ${spec.typical} (median of last 60 windows, spread ${Math.max(3, Math.round(Math.sqrt(spec.typical)))}): ` +
      `${ratio.toFixed(1)}x typical, +${((requests - spec.typical) / Math.sqrt(spec.typical)).toFixed(1)} robust deviations`,
  ];
  const surge = !flagOverride && spec.surge(i);
  if (surge) reasons.push('surge: the traffic around it (same network, same fingerprint) rose 3.00x; against that, +4.2 robust deviations');
  if (flag) reasons.push(`population: outlier among active ${spec.type} entities this window (score ${flag.population.toFixed(2)})`);
  const features: Record<string, number> = { requests, requests_last_slide: Math.round(requests / 6) };
  if (surge) features.expected_rise = 3;
  return {
    verdict_id: verdictId(spec.type, spec.entity, start, end),
    entity_type: spec.type,
    entity: spec.entity,
    scope: scopeOf(spec.type, spec.entity),
    window_start: start,
    window_end: end,
    score: flag ? flag.score : 0.08,
    anomalous: flag !== null,
    detectors,
    reasons,
    features,
    typical: { requests: spec.typical },
    requests,
    model_version: model,
    pipeline_version: pipeline,
  };
}

function aggregateOf(spec: EntitySpec, start: number, requests: number, attack: boolean): WindowAggregateRow {
  const row = new EntityAggregate(spec.type).toRow(spec.entity, start, start + 60_000, Math.round(requests / 6));
  const bots = attack ? requests - spec.typical : 0;
  const ips = Math.max(1, Math.round(spec.typical / 5)) + (attack ? 200 : 0);
  return {
    ...row,
    requests,
    unique_ips: ips,
    unique_paths: attack ? 41 : 40,
    unique_user_agents: 3,
    status_2xx: requests - bots,
    status_4xx: bots,
    status_401: bots,
    post_requests: bots,
    response_bytes: requests * 1000,
    http2_requests: requests,
    requests_per_ip_mean: Math.round((requests / ips) * 100) / 100,
    requests_per_ip_max: attack ? 40 : 10,
    top_paths: attack ? ['/login', '/'] : ['/', '/p/1'],
    top_path_requests: attack ? [bots, requests - bots] : [requests - 10, 10],
  };
}

/** A rule's life: upserts at the end of each flagged window, then a delete. */
function ruleLife(v: Verdict[], end: { why: 'expired' | 'calm' }): RuleChange[] {
  const first = v[0] as Verdict;
  const out: RuleChange[] = [];
  let rule: EdgeRule | null = null;
  for (const x of v) {
    rule = {
      rule_id: `${x.entity_type}:${x.entity}`,
      match: scopeOf(x.entity_type, x.entity),
      action: 'challenge',
      mode: 'enforce',
      created_at: first.window_end,
      updated_at: x.window_end,
      expires_at: x.window_end + TTL_MS,
      score: x.score,
      reason: `${first.entity_type} ${first.entity}: ${first.reasons[0]}`,
      rate_limit_rps: null,
      verdict_id: x.verdict_id,
      entity_type: x.entity_type,
      entity: x.entity,
    };
    out.push({ op: 'upsert', at: x.window_end, rule });
  }
  const last = rule as EdgeRule;
  const at = end.why === 'calm' ? last.updated_at + CALM_MS : last.expires_at;
  out.push({ op: 'delete', at, rule: last, why: end.why });
  return out;
}

/** The fixture for `nowMs`; the rule that stays in force has no delete. */
export function analystFixture(nowMs: number): Fixture {
  const base = Math.floor(nowMs / 60_000) * 60_000 - 45 * 60_000;
  const old = base - 3 * 86_400_000;
  const windowStart = (i: number): number => base + i * 10_000;
  const windowEnd = (i: number): number => windowStart(i) + 60_000;
  const verdicts: Verdict[] = [];
  const aggregates: WindowAggregateRow[] = [];
  for (const spec of SPECS) {
    for (let i = spec.from; i < WINDOWS; i++) {
      const model = i < 120 ? MODEL_A : MODEL_B;
      verdicts.push(verdictOf(spec, windowStart(i), i, model, i < 120 ? '0.1.0' : '0.2.0'));
      aggregates.push(aggregateOf(spec, windowStart(i), spec.requests(i), spec.attack(i)));
    }
  }
  // Three days ago: the ASN and the pair of the first attack were flagged once already.
  const oldFlags = SPECS.slice(0, 2).map((spec) =>
    verdictOf(spec, old, 0, MODEL_A, '0.1.0', (spec.flag(120) as Flag)),
  );
  verdicts.push(...oldFlags);
  for (const [k, spec] of SPECS.slice(0, 2).entries()) aggregates.push(aggregateOf(spec, old, (oldFlags[k] as Verdict).requests, true));

  const flaggedOf = (entity: string, from = 0): Verdict[] =>
    verdicts.filter((v) => v.entity === entity && v.anomalous && v.window_start >= from).sort((a, b) => a.window_start - b.window_start);
  const rules: RuleChange[] = [];
  const pair = `64512|${JA4_BOT}`;
  rules.push(...ruleLife([oldFlags[1] as Verdict], { why: 'expired' }));
  rules.push(...ruleLife(flaggedOf(pair, base), { why: 'expired' }));
  rules.push(...ruleLife(flaggedOf('3320'), { why: 'expired' }));
  for (const v of flaggedOf(JA4_NOISY)) rules.push(...ruleLife([v], { why: 'expired' }));
  rules.push(...ruleLife(flaggedOf(JA4_SCAN), { why: 'calm' }));
  // In force: upserts only.
  rules.push(...ruleLife(flaggedOf(`4200000001|${JA4_APP}`), { why: 'expired' }).filter((c) => c.op === 'upsert'));
  return { base, old, windowStart, windowEnd, verdicts, aggregates, rules };
}

/** ClickHouse's text of a UTC DateTime: `YYYY-MM-DD hh:mm:ss`. */
export function chTime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19).replace('T', ' ');
}
