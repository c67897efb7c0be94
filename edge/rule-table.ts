import type { Logger } from '../logger.js';
import { detectEncoding } from '../schemas/codec.js';
import { fingerprintHex } from '../schemas/fingerprint.js';
import { edgeRuleFromAvro, edgeRuleType, type EdgeRule, type RuleAction, type RuleMatch, type RuleMode } from '../schemas/index.js';

/** The request-log fields a rule can constrain, in the order of the shape bits (CONTRACTS §4). */
export const MATCH_KEYS = ['asn', 'ja4', 'country', 'host', 'client_ip', 'user_agent'] as const;
/** One of {@link MATCH_KEYS}. */
export type MatchKey = (typeof MATCH_KEYS)[number];

/** What `match` looks at: any subset of a request log's match fields (a null `ja4` is plain HTTP: unconstrained rules only). */
export type MatchRequest = { asn?: number | null; ja4?: string | null; country?: string | null; host?: string | null; client_ip?: string | null; user_agent?: string | null };

/**
 * The decision for one request.
 * - `action`/`rule`: the enforce rule that applies, or null for none. When several enforce
 *   rules match, the most severe action wins (block > rate_limit > challenge > log); between
 *   rules of the same action, the more specific match (more keys), then the higher score, then
 *   the smaller rule id.
 * - `shadow`: every matching shadow rule, in the same order. They are never enforced; an edge
 *   node logs them to see what a rule would do before it is enforced.
 */
export interface MatchDecision {
  action: RuleAction | null;
  rule: EdgeRule | null;
  shadow: readonly EdgeRule[];
}

/** Why a rule message was not applied. */
export type RejectReason =
  | 'missing_key' // null or empty Kafka key
  | 'undecodable' // not Avro single-object, truncated, trailing bytes, invalid Avro
  | 'unknown_schema' // single-object fingerprint of a schema other than edge-rule.avsc
  | 'key_mismatch' // Kafka key ≠ rule_id
  | 'empty_match' // a match with no key set: it would match every request
  | 'bad_match' // a match value of the wrong type, empty, or an ASN outside 0..2^32-1
  | 'bad_action'
  | 'bad_mode'
  | 'bad_number'; // a time that is not a safe integer, a score outside [0, 1], a rate that is not finite and > 0

/** Every {@link RejectReason}, for counters and metrics. */
export const REJECT_REASONS: readonly RejectReason[] = [
  'missing_key',
  'undecodable',
  'unknown_schema',
  'key_mismatch',
  'empty_match',
  'bad_match',
  'bad_action',
  'bad_mode',
  'bad_number',
];

/** What applying one message did. */
export type ApplyOutcome =
  | { kind: 'upsert'; rule: EdgeRule; previous: EdgeRule | null }
  | { kind: 'delete'; previous: EdgeRule | null }
  | { kind: 'expired'; rule: EdgeRule; previous: EdgeRule | null }
  | { kind: 'refused'; rule: EdgeRule }
  | { kind: 'rejected'; reason: RejectReason; message: string; previous: EdgeRule | null };

/** Counters of a {@link RuleTable} (metrics; they only grow). */
export interface RuleTableCounters {
  /** Upserts applied (new rules and new versions). */
  applied: number;
  /** Tombstones that removed a rule held. */
  deleted: number;
  /** Tombstones for a key not held (already expired here, never seen, or refused). */
  tombstones_unknown: number;
  /** Messages not applied, by reason. */
  rejected: Record<RejectReason, number>;
  /** New rule ids refused because `max_rules` rules were in force. */
  refused_at_cap: number;
  /** Rules dropped because their `expires_at` passed (purged, or already past on arrival). */
  expired: number;
}

const SEVERITY: Record<RuleAction, number> = { block: 4, rate_limit: 3, challenge: 2, log: 1 };
const ACTIONS: ReadonlySet<string> = new Set(Object.keys(SEVERITY));
const MODES: ReadonlySet<string> = new Set<RuleMode>(['enforce', 'shadow']);
const MAX_ASN = 4_294_967_295;
const EDGE_RULE_FINGERPRINT = fingerprintHex(edgeRuleType);

/** Bit set of the match keys a rule sets. */
export function shapeOf(match: RuleMatch): number {
  let mask = 0;
  for (let i = 0; i < MATCH_KEYS.length; i++) if (match[MATCH_KEYS[i] as MatchKey] !== undefined) mask |= 1 << i;
  return mask;
}

function keyCount(mask: number): number {
  let n = 0;
  for (let m = mask; m; m &= m - 1) n++;
  return n;
}

/**
 * The index key of `values` under `mask`, or null when a key of the shape is absent. Every
 * value but the last is length-prefixed, so no choice of strings makes two different tuples
 * collide; a one-key shape's key is the value itself (no string is built on the hot path).
 */
function indexKey(mask: number, values: MatchRequest | RuleMatch): string | null {
  let key: string | null = null;
  for (let i = 0; i < MATCH_KEYS.length; i++) {
    if ((mask & (1 << i)) === 0) continue;
    const v = values[MATCH_KEYS[i] as MatchKey];
    if (v === undefined || v === null) return null;
    const s = typeof v === 'number' ? String(v) : v;
    key = key === null ? s : `${key.length}:${key}${s}`;
  }
  return key;
}

/**
 * Order of preference between two matching rules: negative when `a` wins. Most severe action,
 * then more match keys, then higher score, then smaller rule id (so the choice is deterministic).
 */
export function compareRules(a: EdgeRule, b: EdgeRule): number {
  return (
    SEVERITY[b.action] - SEVERITY[a.action] ||
    keyCount(shapeOf(b.match)) - keyCount(shapeOf(a.match)) ||
    b.score - a.score ||
    (a.rule_id < b.rule_id ? -1 : a.rule_id > b.rule_id ? 1 : 0)
  );
}

/** Whether `rule` constrains only fields that `request` has, with equal values (the definition `match` indexes). */
export function ruleMatches(rule: EdgeRule, request: MatchRequest): boolean {
  for (const k of MATCH_KEYS) {
    const want = rule.match[k];
    if (want !== undefined && request[k] !== want) return false;
  }
  return true;
}

/** A rejected message: the reason, and words for the log. */
export class RuleRejection extends Error {
  constructor(
    readonly reason: RejectReason,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Decodes a rule value: Avro single-object encoding of `schemas/edge-rule.avsc` (`C3 01`,
 * CRC-64-AVRO fingerprint, binary), as {@link EdgeRuleSink} writes it. Throws {@link RuleRejection}.
 */
export function decodeEdgeRule(value: Buffer): EdgeRule {
  if (value.length === 0 || detectEncoding(value) !== 'single_object') {
    throw new RuleRejection('undecodable', `value of ${value.length} bytes is not Avro single-object encoded (expected C3 01)`);
  }
  const fp = value.readBigUInt64LE(2).toString(16).padStart(16, '0');
  if (fp !== EDGE_RULE_FINGERPRINT) {
    throw new RuleRejection('unknown_schema', `writer schema fingerprint ${fp} is not edge-rule.avsc (${EDGE_RULE_FINGERPRINT})`);
  }
  let out: { value: unknown; offset: number };
  try {
    out = edgeRuleType.decode(value, 10);
  } catch (err) {
    throw new RuleRejection('undecodable', `invalid Avro: ${(err as Error).message}`);
  }
  if (out.offset < 0) throw new RuleRejection('undecodable', `value ends inside the record (${value.length} bytes)`);
  if (out.offset !== value.length) throw new RuleRejection('undecodable', `${value.length - out.offset} bytes left after the record`);
  return edgeRuleFromAvro(out.value as Record<string, unknown>);
}

const isSafeTime = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v);

/**
 * Semantic checks a decoded rule must pass before an edge node applies it (Avro types cannot
 * express them, and rules may also come from code). Throws {@link RuleRejection}.
 */
export function validateEdgeRule(key: string, rule: EdgeRule): EdgeRule {
  if (typeof rule.rule_id !== 'string' || rule.rule_id !== key) {
    throw new RuleRejection('key_mismatch', `Kafka key '${key.slice(0, 120)}' differs from rule_id '${String(rule.rule_id).slice(0, 120)}'`);
  }
  const match = rule.match as Record<string, unknown> | undefined;
  if (!match || typeof match !== 'object') throw new RuleRejection('empty_match', 'rule has no match');
  let keys = 0;
  for (const k of Object.keys(match)) {
    const v = match[k];
    if (v === undefined || v === null) continue;
    if (!(MATCH_KEYS as readonly string[]).includes(k)) throw new RuleRejection('bad_match', `match key '${k}' is not one of ${MATCH_KEYS.join(', ')}`);
    keys++;
    if (k === 'asn') {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > MAX_ASN) throw new RuleRejection('bad_match', `match.asn ${String(v)} is not an integer in 0..${MAX_ASN}`);
    } else if (typeof v !== 'string' || v.length === 0) {
      throw new RuleRejection('bad_match', `match.${k} must be a non-empty string`);
    }
  }
  if (keys === 0) throw new RuleRejection('empty_match', 'match sets no key: the rule would apply to every request');
  if (!ACTIONS.has(rule.action)) throw new RuleRejection('bad_action', `action '${String(rule.action)}' is not one of ${[...ACTIONS].join(', ')}`);
  if (!MODES.has(rule.mode)) throw new RuleRejection('bad_mode', `mode '${String(rule.mode)}' is not enforce or shadow`);
  for (const f of ['created_at', 'updated_at', 'expires_at'] as const) {
    if (!isSafeTime(rule[f])) throw new RuleRejection('bad_number', `${f} ${String(rule[f])} is not an epoch-ms integer`);
  }
  if (typeof rule.score !== 'number' || !(rule.score >= 0 && rule.score <= 1)) throw new RuleRejection('bad_number', `score ${String(rule.score)} is not in [0, 1]`);
  const rps = rule.rate_limit_rps;
  if (rps !== null && rps !== undefined && (typeof rps !== 'number' || !Number.isFinite(rps) || rps <= 0)) {
    throw new RuleRejection('bad_number', `rate_limit_rps ${String(rps)} is not a finite number > 0`);
  }
  return rule;
}

interface Shape {
  mask: number;
  /** Number of match keys of the shape. */
  keys: number;
  /** Index key → rules with exactly that match (several rule ids may share one match). */
  byKey: Map<string, EdgeRule[]>;
  rules: number;
}

/** Options of {@link RuleTable}. */
export interface RuleTableOptions {
  /** Most rules held at once. Default 100 000. */
  maxRules?: number;
  /** Wall clock for expiry, epoch ms. Default `Date.now`. */
  clock?: () => number;
  /** Where rejections are logged (once per message, at most 20 per reason, then every 1 000th). */
  logger?: Logger;
}

const NO_SHADOW: readonly EdgeRule[] = Object.freeze([]);
const NO_MATCH: MatchDecision = Object.freeze({ action: null, rule: null, shadow: NO_SHADOW });

/**
 * The rules an edge node holds, with no I/O: the state the compacted topic describes, applied
 * one message at a time (upsert or tombstone), plus local expiry and a cap. Lookups are indexed
 * by the shape of a rule's match (which keys it sets) and by its values, so `match` costs one
 * Map probe per shape in force (at most 63, in practice a handful), whatever the rule count.
 */
export class RuleTable {
  private readonly byId = new Map<string, EdgeRule>();
  private readonly shapes = new Map<number, Shape>();
  /** The shapes in force, most specific first (the iteration order of `match`). */
  private shapeList: Shape[] = [];
  private readonly maxRules: number;
  private readonly clock: () => number;
  private readonly log: Logger | undefined;
  /** No rule held expires before this (epoch ms); lets `purgeExpired` skip the scan. */
  private nextExpiry = Infinity;
  readonly counters: RuleTableCounters = {
    applied: 0,
    deleted: 0,
    tombstones_unknown: 0,
    rejected: Object.fromEntries(REJECT_REASONS.map((r) => [r, 0])) as Record<RejectReason, number>,
    refused_at_cap: 0,
    expired: 0,
  };

  constructor(options: RuleTableOptions = {}) {
    this.maxRules = options.maxRules ?? 100_000;
    this.clock = options.clock ?? Date.now;
    this.log = options.logger;
  }

  /** Rules held, expired ones not yet purged included (see {@link rules} for those in force). */
  get size(): number {
    return this.byId.size;
  }

  /**
   * Applies one message of the rule topic: `value` null is a tombstone, else the Avro
   * single-object rule. Never throws: a bad message is counted, logged and not applied.
   */
  applyMessage(key: string | null, value: Buffer | null): ApplyOutcome {
    if (key === null || key === '') return this.reject('missing_key', `message without a key (${value === null ? 'tombstone' : `${value.length} bytes`})`, null);
    if (value === null) return this.delete(key);
    let rule: EdgeRule;
    try {
      rule = decodeEdgeRule(value);
    } catch (err) {
      if (!(err instanceof RuleRejection)) throw err;
      return this.reject(err.reason, err.message, key);
    }
    return this.upsert(key, rule);
  }

  /**
   * Applies a decoded rule under Kafka key `key`. A rule that fails validation is rejected and,
   * like any later version of a key, replaces what the key held: the key's previous rule is
   * dropped, so a node that followed the topic holds what a fresh node bootstrapping from the
   * compacted topic (which keeps only the last value per key) holds.
   */
  upsert(key: string, rule: EdgeRule): ApplyOutcome {
    try {
      validateEdgeRule(key, rule);
    } catch (err) {
      if (!(err instanceof RuleRejection)) throw err;
      return this.reject(err.reason, err.message, key);
    }
    const previous = this.byId.get(key) ?? null;
    if (rule.expires_at <= this.clock()) {
      // Already past its expiry (a late version, or a bootstrap long after): it supersedes the
      // previous version, which goes too.
      if (previous) this.remove(previous);
      this.counters.expired++;
      return { kind: 'expired', rule, previous };
    }
    if (!previous && this.byId.size >= this.maxRules) {
      this.purgeExpired();
      if (this.byId.size >= this.maxRules) {
        this.counters.refused_at_cap++;
        if (this.counters.refused_at_cap === 1 || this.counters.refused_at_cap % 1000 === 0) {
          this.log?.warn({ rule_id: key, max_rules: this.maxRules, refused: this.counters.refused_at_cap }, 'edge rule refused: max_rules rules are in force');
        }
        return { kind: 'refused', rule };
      }
    }
    if (previous) this.remove(previous);
    this.insert(rule);
    this.counters.applied++;
    return { kind: 'upsert', rule, previous };
  }

  /** Applies a tombstone for `key`. */
  delete(key: string): ApplyOutcome {
    const previous = this.byId.get(key) ?? null;
    if (previous) {
      this.remove(previous);
      this.counters.deleted++;
    } else {
      this.counters.tombstones_unknown++;
    }
    return { kind: 'delete', previous };
  }

  /** The decision for `request`: one Map probe per shape in force. Expired rules never match. */
  match(request: MatchRequest): MatchDecision {
    let best: EdgeRule | null = null;
    let bestKeys = 0;
    let shadow: EdgeRule[] | null = null;
    let now = -1;
    for (const shape of this.shapeList) {
      const key = indexKey(shape.mask, request);
      if (key === null) continue;
      const bucket = shape.byKey.get(key);
      if (!bucket) continue;
      for (const rule of bucket) {
        if (now < 0) now = this.clock();
        if (rule.expires_at <= now) continue;
        if (rule.mode === 'shadow') (shadow ??= []).push(rule);
        // compareRules, with the key counts known from the shapes.
        else if (!best || (SEVERITY[rule.action] - SEVERITY[best.action] || shape.keys - bestKeys || rule.score - best.score || (rule.rule_id < best.rule_id ? 1 : -1)) > 0) {
          best = rule;
          bestKeys = shape.keys;
        }
      }
    }
    if (!best && !shadow) return NO_MATCH;
    if (shadow && shadow.length > 1) shadow.sort(compareRules);
    return { action: best ? best.action : null, rule: best, shadow: shadow ?? NO_SHADOW };
  }

  /** The rules in force now (not expired), by rule id. */
  rules(): EdgeRule[] {
    const now = this.clock();
    return [...this.byId.values()].filter((r) => r.expires_at > now).sort((a, b) => (a.rule_id < b.rule_id ? -1 : a.rule_id > b.rule_id ? 1 : 0));
  }

  /** Distinct match shapes in force: the Map probes one `match` makes at most. */
  get shapesInForce(): number {
    return this.shapeList.length;
  }

  /** The rule held under `ruleId`, expired or not, if any. */
  get(ruleId: string): EdgeRule | undefined {
    return this.byId.get(ruleId);
  }

  /**
   * Drops every rule whose expiry has passed; returns them. Scans only when some rule has
   * expired (the earliest expiry is tracked), so calling it often costs nothing.
   */
  purgeExpired(): EdgeRule[] {
    const now = this.clock();
    if (now < this.nextExpiry) return [];
    const gone: EdgeRule[] = [];
    let next = Infinity;
    for (const rule of this.byId.values()) {
      if (rule.expires_at <= now) gone.push(rule);
      else if (rule.expires_at < next) next = rule.expires_at;
    }
    for (const rule of gone) this.remove(rule);
    this.counters.expired += gone.length;
    this.nextExpiry = next;
    return gone;
  }

  private reject(reason: RejectReason, message: string, key: string | null): ApplyOutcome {
    const n = ++this.counters.rejected[reason];
    const previous = key === null ? null : (this.byId.get(key) ?? null);
    if (previous) this.remove(previous);
    if (n <= 20 || n % 1000 === 0) {
      this.log?.warn({ rule_id: key, reason, rejected: n, dropped_previous: previous !== null }, `edge rule rejected: ${message}`);
    }
    return { kind: 'rejected', reason, message, previous };
  }

  private insert(rule: EdgeRule): void {
    this.byId.set(rule.rule_id, rule);
    if (rule.expires_at < this.nextExpiry) this.nextExpiry = rule.expires_at;
    const mask = shapeOf(rule.match);
    let shape = this.shapes.get(mask);
    if (!shape) {
      shape = { mask, keys: keyCount(mask), byKey: new Map(), rules: 0 };
      this.shapes.set(mask, shape);
      this.reshape();
    }
    const key = indexKey(mask, rule.match) as string;
    const bucket = shape.byKey.get(key);
    if (bucket) bucket.push(rule);
    else shape.byKey.set(key, [rule]);
    shape.rules++;
  }

  private remove(rule: EdgeRule): void {
    this.byId.delete(rule.rule_id);
    const mask = shapeOf(rule.match);
    const shape = this.shapes.get(mask);
    if (!shape) return;
    const key = indexKey(mask, rule.match) as string;
    const bucket = shape.byKey.get(key);
    if (bucket) {
      const at = bucket.indexOf(rule);
      if (at >= 0) {
        bucket.splice(at, 1);
        shape.rules--;
      }
      if (bucket.length === 0) shape.byKey.delete(key);
    }
    if (shape.rules === 0) {
      this.shapes.delete(mask);
      this.reshape();
    }
  }

  private reshape(): void {
    this.shapeList = [...this.shapes.values()].sort((a, b) => b.keys - a.keys || a.mask - b.mask);
  }
}
