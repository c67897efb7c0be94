import { z } from 'zod';
import type { EntityType } from '../consumers/aggregates.js';
import type { Verdict } from '../detectors/verdict.js';
import type { EdgeRule, RuleAction, RuleMatch, RuleMode } from '../schemas/index.js';

/** An allowlist entry: `asn:15169` or `ja4:<fingerprint>`. */
export const allowEntrySchema = z
  .string()
  .regex(/^(asn:\d+|ja4:\S+)$/, { message: "allowlist entries look like 'asn:15169' or 'ja4:t13d…'" });

/** Configuration of the rule lifecycle. */
export const ruleLifecycleSchema = z
  .object({
    /** How long a rule stays in force after the last anomalous window renewed it, ms (event time). Default 600 000. */
    ttl_ms: z.number().int().positive().default(600_000),
    /** Action of a new rule. Default `challenge`. */
    action: z.enum(['challenge', 'block', 'rate_limit', 'log']).default('challenge'),
    /** Mode of every rule: `shadow` rules are published but not enforced by edges. Default `enforce`. */
    mode: z.enum(['enforce', 'shadow']).default('enforce'),
    /** Requests per second per client for `rate_limit` rules. Default 1. */
    rate_limit_rps: z.number().positive().default(1),
    /** Most rules in force at once; further verdicts create no rule (counted). Default 10 000. */
    max_active_rules: z.number().int().positive().default(10_000),
    /** Entities that never get a rule, e.g. `asn:15169` (verified crawler). */
    allow: z.array(allowEntrySchema).default([]),
  })
  .strict();

/** Validated rule lifecycle configuration. */
export type RuleLifecycleConfig = z.infer<typeof ruleLifecycleSchema>;

/** A change to the rule set, stamped in event time (CONTRACTS §4, replay NDJSON). */
export type RuleChange =
  | { op: 'upsert'; at: number; rule: EdgeRule }
  | { op: 'delete'; at: number; rule: EdgeRule; why: 'expired' };

/** The match of an entity: the most specific equality constraints it stands for. */
export function matchOf(entityType: EntityType, entity: string): RuleMatch {
  if (entityType === 'asn') return { asn: Number(entity) };
  if (entityType === 'ja4') return { ja4: entity };
  const bar = entity.indexOf('|');
  return { asn: Number(entity.slice(0, bar)), ja4: entity.slice(bar + 1) };
}

/** Rule ids are readable and deterministic: one rule per entity, so renewals overwrite it on the compacted topic. */
export function ruleIdOf(entityType: EntityType, entity: string): string {
  return `${entityType}:${entity}`;
}

/**
 * Turns verdicts into rule changes. A rule is created for an anomalous entity, renewed
 * (expiry pushed out) while its windows stay anomalous, and deleted by a tombstone once the
 * watermark passes its expiry. When an asn×ja4 pair is anomalous, no separate rule is made in
 * that window for its whole ASN or whole fingerprint: the pair is the narrower match that
 * covers the burst. Pure state machine in event time; no clock, no I/O.
 */
export class RuleLifecycle {
  private readonly active = new Map<string, EdgeRule>();
  private allowAsn = new Set<number>();
  private allowJa4 = new Set<string>();
  /** Rules not created because max_active_rules was reached (a metric). */
  refusedAtCap = 0;
  /** Anomalous verdicts that got no rule because of the allowlist (a metric). */
  allowlisted = 0;

  constructor(private config: RuleLifecycleConfig) {
    this.setAllowlist(config.allow);
  }

  /** Replaces the allowlist; takes effect from the next window, without a restart. */
  setAllowlist(entries: readonly string[]): void {
    const asn = new Set<number>();
    const ja4 = new Set<string>();
    for (const e of entries) {
      const parsed = allowEntrySchema.parse(e);
      if (parsed.startsWith('asn:')) asn.add(Number(parsed.slice(4)));
      else ja4.add(parsed.slice(4));
    }
    this.allowAsn = asn;
    this.allowJa4 = ja4;
    this.config = { ...this.config, allow: [...entries] };
  }

  /** Rules in force now. */
  get rules(): EdgeRule[] {
    return [...this.active.values()];
  }

  /** Processes the verdicts of one closed window; returns the upserts it causes. */
  onWindow(verdicts: readonly Verdict[]): RuleChange[] {
    const flagged = verdicts.filter((v) => v.anomalous);
    const coveredAsn = new Set<string>();
    const coveredJa4 = new Set<string>();
    for (const v of flagged) {
      if (v.entity_type !== 'asn_ja4') continue;
      const bar = v.entity.indexOf('|');
      coveredAsn.add(v.entity.slice(0, bar));
      coveredJa4.add(v.entity.slice(bar + 1));
    }
    const out: RuleChange[] = [];
    const ordered = [...flagged].sort((a, b) => b.score - a.score || (a.entity < b.entity ? -1 : 1));
    for (const v of ordered) {
      if ((v.entity_type === 'asn' && coveredAsn.has(v.entity)) || (v.entity_type === 'ja4' && coveredJa4.has(v.entity))) continue;
      const match = matchOf(v.entity_type, v.entity);
      if ((match.asn !== undefined && this.allowAsn.has(match.asn)) || (match.ja4 !== undefined && this.allowJa4.has(match.ja4))) {
        this.allowlisted++;
        continue;
      }
      const id = ruleIdOf(v.entity_type, v.entity);
      const existing = this.active.get(id);
      if (!existing && this.active.size >= this.config.max_active_rules) {
        this.refusedAtCap++;
        continue;
      }
      const rule: EdgeRule = {
        rule_id: id,
        match,
        action: (existing?.action ?? this.config.action) as RuleAction,
        mode: (existing?.mode ?? this.config.mode) as RuleMode,
        created_at: existing?.created_at ?? v.window_end,
        updated_at: v.window_end,
        expires_at: Math.max(existing?.expires_at ?? 0, v.window_end + this.config.ttl_ms),
        score: v.score,
        reason: `${v.entity_type} ${v.entity}: ${v.reasons[0] ?? 'anomalous'}`,
        rate_limit_rps: this.config.action === 'rate_limit' ? this.config.rate_limit_rps : null,
        verdict_id: v.verdict_id,
        entity_type: v.entity_type,
        entity: v.entity,
      };
      this.active.set(id, rule);
      out.push({ op: 'upsert', at: v.window_end, rule });
    }
    return out;
  }

  /** Deletes the rules whose expiry the watermark has passed; returns the tombstones. */
  onWatermark(watermark: number): RuleChange[] {
    const out: RuleChange[] = [];
    for (const [id, rule] of this.active) {
      if (rule.expires_at <= watermark) {
        this.active.delete(id);
        out.push({ op: 'delete', at: rule.expires_at, rule, why: 'expired' });
      }
    }
    return out.sort((a, b) => a.at - b.at || (a.rule.rule_id < b.rule.rule_id ? -1 : 1));
  }

  /** End of input (replay): every rule still in force expires at its own time. */
  expireAll(): RuleChange[] {
    return this.onWatermark(Number.POSITIVE_INFINITY);
  }
}

/** The replay NDJSON line of a rule change (CONTRACTS §4). */
export function ruleChangeLine(c: RuleChange): Record<string, unknown> {
  const r = c.rule;
  return {
    op: c.op,
    rule_id: r.rule_id,
    match: r.match,
    action: r.action,
    mode: r.mode,
    created_at: r.created_at,
    expires_at: r.expires_at,
    at: c.at,
    score: r.score,
    reason: c.op === 'delete' ? `expired: ${r.reason}` : r.reason,
    verdict_id: r.verdict_id,
  };
}
