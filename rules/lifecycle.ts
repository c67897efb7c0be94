import { z } from 'zod';
import type { EntityType } from '../consumers/aggregates.js';
import { scopeOf, type Verdict } from '../detectors/verdict.js';
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

/** An {@link EdgeRule} as the lifecycle holds it, validated when restored from a checkpoint. */
const edgeRuleSchema = z
  .object({
    rule_id: z.string().min(1),
    match: z
      .object({
        asn: z.number().int().nonnegative().optional(),
        ja4: z.string().optional(),
        country: z.string().optional(),
        host: z.string().optional(),
        client_ip: z.string().optional(),
        user_agent: z.string().optional(),
      })
      .strict()
      .refine((m) => Object.keys(m).length > 0, { message: 'at least one match key must be set' }),
    action: z.enum(['challenge', 'block', 'rate_limit', 'log']),
    mode: z.enum(['enforce', 'shadow']),
    created_at: z.number().int(),
    updated_at: z.number().int(),
    expires_at: z.number().int(),
    score: z.number().min(0).max(1),
    reason: z.string(),
    rate_limit_rps: z.number().positive().nullable(),
    verdict_id: z.string().nullable(),
    entity_type: z.enum(['asn', 'ja4', 'asn_ja4']).nullable(),
    entity: z.string().nullable(),
  })
  .strict()
  .refine((r) => r.entity_type === null || r.entity === null || r.rule_id === ruleIdOf(r.entity_type, r.entity), {
    message: 'rule_id must be ruleIdOf(entity_type, entity), or renewals would not find the rule',
    path: ['rule_id'],
  });

/** Checkpoint form of a {@link RuleLifecycle}: the rules in force, in the order they were first created. */
export interface RuleLifecycleJSON {
  v: 1;
  rules: EdgeRule[];
}

function malformed(where: string, message: string): never {
  throw new TypeError(`RuleLifecycle.${where}: ${message}`);
}

function parseRule(where: string, v: unknown): EdgeRule {
  const r = edgeRuleSchema.safeParse(v);
  if (!r.success) malformed(where, r.error.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : '(rule)'}: ${i.message}`).join('; '));
  const d = r.data;
  // Only the keys that are set, and every key in the order onWindow writes them: a restored rule
  // serialises to the same bytes as the one checkpointed.
  const match: RuleMatch = {};
  for (const [k, x] of Object.entries(d.match)) if (x !== undefined) (match as Record<string, unknown>)[k] = x;
  return {
    rule_id: d.rule_id,
    match,
    action: d.action,
    mode: d.mode,
    created_at: d.created_at,
    updated_at: d.updated_at,
    expires_at: d.expires_at,
    score: d.score,
    reason: d.reason,
    rate_limit_rps: d.rate_limit_rps,
    verdict_id: d.verdict_id,
    entity_type: d.entity_type,
    entity: d.entity,
  };
}

/** The match of an entity: the most specific equality constraints it stands for (the verdict's scope). */
export function matchOf(entityType: EntityType, entity: string): RuleMatch {
  return scopeOf(entityType, entity);
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
 *
 * Its whole state is the rules in force ({@link toJSON}, or per rule {@link ruleState}); the
 * allowlist and the rest of the configuration come from the config, and the counters are
 * metrics only. The {@link RuleChange}s it returns are themselves a complete changelog: an
 * upsert carries the rule as now held, a delete removes it.
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

  /** JSON-safe snapshot of everything that affects future decisions ({@link RuleLifecycleJSON}). */
  toJSON(): RuleLifecycleJSON {
    return { v: 1, rules: this.rules.map((r) => structuredClone(r)) };
  }

  /** A lifecycle with `config`, restored from {@link toJSON} output; throws a TypeError naming what is wrong. */
  static fromJSON(config: RuleLifecycleConfig, v: unknown): RuleLifecycle {
    const rl = new RuleLifecycle(config);
    rl.restore(v);
    return rl;
  }

  /**
   * Replaces the rules in force with those of a {@link toJSON} snapshot; throws a TypeError
   * naming what is wrong, and then changes nothing. Rules past their expiry are kept: the next
   * watermark deletes them, with their tombstones.
   */
  restore(v: unknown): void {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) malformed('restore', 'expected an object');
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) if (k !== 'v' && k !== 'rules') malformed('restore', `unknown key '${k}'`);
    if (o.v !== 1) malformed('restore', `unsupported version 'v': ${JSON.stringify(o.v)} (expected 1)`);
    if (!Array.isArray(o.rules)) malformed('restore', "'rules' must be an array");
    const active = new Map<string, EdgeRule>();
    o.rules.forEach((x, i) => {
      const rule = parseRule(`restore: rules[${i}]`, x);
      if (active.has(rule.rule_id)) malformed('restore', `rules[${i}] repeats rule_id '${rule.rule_id}'`);
      active.set(rule.rule_id, rule);
    });
    this.active.clear();
    for (const [id, rule] of active) this.active.set(id, rule);
  }

  /** Snapshot of one rule in force, or null: the value of the rule's key on a compacted topic. */
  ruleState(ruleId: string): EdgeRule | null {
    const r = this.active.get(ruleId);
    return r ? structuredClone(r) : null;
  }

  /**
   * Installs one rule from {@link ruleState} or an upsert, replacing the rule of the same id;
   * throws a TypeError naming what is wrong. Restoring rule by rule, in any order, gives the
   * same decisions as {@link restore} (only the order of {@link rules} may differ).
   */
  restoreRule(rule: unknown): void {
    const r = parseRule('restoreRule', rule);
    this.active.set(r.rule_id, r);
  }

  /** Drops a rule without a tombstone (its entity moved to another process). Returns whether it was in force. */
  forgetRule(ruleId: string): boolean {
    return this.active.delete(ruleId);
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
