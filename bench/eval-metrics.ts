/**
 * The pure parts of the quality evaluation (bench/eval.ts): which rules were in force when,
 * whether a rule hits a request, detection latency in window slides, and what a run's verdicts
 * say about each labelled burst. No I/O, no clock.
 */
import { burstContains, type LabelledBurst } from '../cli/traffic.js';
import type { RuleChange } from '../rules/lifecycle.js';
import type { RequestLog, RuleMatch } from '../schemas/index.js';

/** The verdict fields the evaluation relies on (the verdict type may grow; nothing else is read). */
export interface FlagVerdict {
  entity_type: string;
  entity: string;
  /** Epoch ms. */
  window_start: number;
  /** Epoch ms. */
  window_end: number;
  score: number;
}

/** Whether every key of a rule's match equals the request's field of that name (an empty match hits nothing). */
export function ruleMatchesRequest(match: RuleMatch, log: RequestLog): boolean {
  let keys = 0;
  for (const [k, v] of Object.entries(match)) {
    if (v === undefined) continue;
    keys++;
    if ((log as unknown as Record<string, unknown>)[k] !== v) return false;
  }
  return keys > 0;
}

/** One stretch of event time, [from, to) ms, during which an enforced rule was in force. */
export interface RuleInterval {
  ruleId: string;
  match: RuleMatch;
  from: number;
  to: number;
}

/**
 * The stretches of event time in which each rule was enforced, from the rule changes of a run
 * (in the order the pipeline emitted them). A version of a rule (an upsert) holds from its
 * change time until the rule's next change; within it the rule is in force on
 * [created_at, expires_at) when its mode is `enforce`. A delete ends the rule; a later upsert of
 * the same id starts it again. Adjacent stretches of one rule are merged.
 */
export function enforcedIntervals(changes: readonly RuleChange[]): RuleInterval[] {
  const byRule = new Map<string, RuleChange[]>();
  for (const c of changes) {
    const list = byRule.get(c.rule.rule_id);
    if (list) list.push(c);
    else byRule.set(c.rule.rule_id, [c]);
  }
  const out: RuleInterval[] = [];
  for (const [ruleId, list] of byRule) {
    // Stable: the pipeline's order breaks ties of event time.
    const ordered = list.map((c, i) => ({ c, i })).sort((a, b) => a.c.at - b.c.at || a.i - b.i).map((x) => x.c);
    let open: RuleInterval | null = null;
    for (let i = 0; i < ordered.length; i++) {
      const c = ordered[i]!;
      if (c.op !== 'upsert' || c.rule.mode !== 'enforce') continue;
      const until = ordered[i + 1]?.at ?? Number.POSITIVE_INFINITY;
      const from = Math.max(c.at, c.rule.created_at);
      const to = Math.min(until, c.rule.expires_at);
      if (!(to > from)) continue;
      if (open !== null && open.to === from) {
        open.to = to;
      } else {
        open = { ruleId, match: c.rule.match, from, to };
        out.push(open);
      }
    }
  }
  return out.sort((a, b) => a.from - b.from || (a.ruleId < b.ruleId ? -1 : a.ruleId > b.ruleId ? 1 : 0));
}

/**
 * Answers "does any enforced rule in force at this request's time hit it?" for many requests:
 * intervals indexed by the ASN of their match, else by its fingerprint, else kept in a short list
 * checked for every request.
 */
export class RuleHits {
  private readonly byAsn = new Map<number, RuleInterval[]>();
  private readonly byJa4 = new Map<string, RuleInterval[]>();
  private readonly other: RuleInterval[] = [];
  /** Intervals indexed. */
  readonly size: number;

  constructor(intervals: readonly RuleInterval[]) {
    this.size = intervals.length;
    for (const iv of intervals) {
      const m = iv.match;
      if (m.asn !== undefined) push(this.byAsn, m.asn, iv);
      else if (m.ja4 !== undefined) push(this.byJa4, m.ja4, iv);
      else this.other.push(iv);
    }
  }

  /** Whether an enforced rule hits the request at its own timestamp. */
  hits(log: RequestLog): boolean {
    const t = log.timestamp;
    const check = (list: readonly RuleInterval[] | undefined): boolean => {
      if (!list) return false;
      for (const iv of list) if (iv.from <= t && t < iv.to && ruleMatchesRequest(iv.match, log)) return true;
      return false;
    };
    return check(this.byAsn.get(log.asn)) || (log.ja4 !== null && check(this.byJa4.get(log.ja4))) || check(this.other);
  }
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

/** End of the first window that holds data from `startMs` on: the first slide boundary strictly after it (windows end on multiples of the slide). */
export function firstWindowEnd(startMs: number, slideMs: number): number {
  return Math.floor(startMs / slideMs) * slideMs + slideMs;
}

/**
 * Detection latency in window slides: how many windows holding burst data had closed up to and
 * including the first flagged one. 1 when the first window with any burst data (see
 * {@link firstWindowEnd}) is flagged, 2 for the next, and so on.
 */
export function latencyInSlides(startMs: number, flaggedWindowEnd: number, slideMs: number): number {
  return Math.round((flaggedWindowEnd - firstWindowEnd(startMs, slideMs)) / slideMs) + 1;
}

/** Whether a verdict's window holds data of [startMs, endMs): window_end > startMs and window_start < endMs. */
export function windowOverlaps(v: { window_start: number; window_end: number }, startMs: number, endMs: number): boolean {
  return v.window_end > startMs && v.window_start < endMs;
}

/** Whether a generated request belongs to a burst: its label for attacks; for benign bursts, inside it in time and from its match (null when the burst names no entity). */
export function inBurst(b: LabelledBurst, log: RequestLog, label: string | null): boolean | null {
  if (b.kind === 'attack') return label === b.name;
  if (b.match.asn === undefined && b.match.ja4 === undefined) return null;
  if (label !== null || log.timestamp < b.startMs || log.timestamp >= b.endMs) return false;
  return (b.match.asn === undefined || log.asn === b.match.asn) && (b.match.ja4 === undefined || log.ja4 === b.match.ja4);
}

/** What a run's anomalous verdicts say about one burst. */
export interface BurstFlags {
  /** Window end of the first anomalous verdict on an entity containing the burst, in a window holding burst data; null when none. */
  firstFlagEnd: number | null;
  /** firstFlagEnd − startMs, ms. */
  latencyMs: number | null;
  /** {@link latencyInSlides} of the first flag. */
  latencySlides: number | null;
  /** Entity types flagged on entities containing the burst, in windows holding burst data. */
  entityTypes: string[];
  /** Anomalous windows on entities containing the burst, from its start to the end of the run, per entity type. */
  windows: Record<string, number>;
  /** Window end of the last anomalous verdict on an entity containing the burst; null when none. */
  lastFlagEnd: number | null;
  /** Entities containing no attack that were flagged in windows holding burst data (benign entities caught up in it). */
  bystanders: FlaggedEntity[];
}

/** An entity flagged in some windows. */
export interface FlaggedEntity {
  entity_type: string;
  entity: string;
  /** Window end of its first anomalous verdict. */
  firstEnd: number;
  /** Anomalous windows. */
  windows: number;
  maxScore: number;
}

const TYPE_ORDER = ['asn', 'ja4', 'asn_ja4'];
const byType = (a: string, b: string): number => TYPE_ORDER.indexOf(a) - TYPE_ORDER.indexOf(b);

/** Whether an entity contains any attack burst of the run. */
export function containsAttack(entityType: string, entity: string, bursts: readonly LabelledBurst[]): boolean {
  return bursts.some((b) => b.kind === 'attack' && burstContains(entityType, entity, b.match));
}

/** Groups anomalous verdicts by entity, in order of first flag. */
export function groupFlags(verdicts: readonly FlagVerdict[]): FlaggedEntity[] {
  const m = new Map<string, FlaggedEntity>();
  for (const v of verdicts) {
    const key = `${v.entity_type}\u0000${v.entity}`;
    const e = m.get(key);
    if (!e) m.set(key, { entity_type: v.entity_type, entity: v.entity, firstEnd: v.window_end, windows: 1, maxScore: v.score });
    else {
      e.firstEnd = Math.min(e.firstEnd, v.window_end);
      e.windows++;
      e.maxScore = Math.max(e.maxScore, v.score);
    }
  }
  return [...m.values()].sort((a, b) => a.firstEnd - b.firstEnd || byType(a.entity_type, b.entity_type) || (a.entity < b.entity ? -1 : 1));
}

/**
 * The flags of one burst among a run's anomalous verdicts. Windows "holding burst data" are
 * those overlapping [startMs, endMs), i.e. ending before endMs + window size.
 */
export function burstFlags(b: LabelledBurst, anomalous: readonly FlagVerdict[], bursts: readonly LabelledBurst[], slideMs: number): BurstFlags {
  const mine = anomalous.filter((v) => burstContains(v.entity_type, v.entity, b.match) && v.window_end > b.startMs);
  const during = mine.filter((v) => windowOverlaps(v, b.startMs, b.endMs));
  let first: number | null = null;
  for (const v of during) if (first === null || v.window_end < first) first = v.window_end;
  let last: number | null = null;
  const windows: Record<string, number> = {};
  for (const v of mine) {
    windows[v.entity_type] = (windows[v.entity_type] ?? 0) + 1;
    if (last === null || v.window_end > last) last = v.window_end;
  }
  const bystanders = groupFlags(anomalous.filter((v) => windowOverlaps(v, b.startMs, b.endMs) && !containsAttack(v.entity_type, v.entity, bursts)));
  return {
    firstFlagEnd: first,
    latencyMs: first === null ? null : first - b.startMs,
    latencySlides: first === null ? null : latencyInSlides(b.startMs, first, slideMs),
    entityTypes: [...new Set(during.map((v) => v.entity_type))].sort(byType),
    windows,
    lastFlagEnd: last,
    bystanders,
  };
}
