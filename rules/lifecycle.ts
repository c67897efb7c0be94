import { z } from 'zod';
import { splitPair, type EntityType } from '../consumers/aggregates.js';
import { scopeOf, type Verdict } from '../detectors/verdict.js';
import type { EdgeRule, RuleAction, RuleMatch, RuleMode } from '../schemas/index.js';

/** An allowlist entry: `asn:15169` or `ja4:<fingerprint>`. */
export const allowEntrySchema = z
  .string()
  .regex(/^(asn:\d+|ja4:\S+)$/, { message: "allowlist entries look like 'asn:15169' or 'ja4:t13d…'" });

/** A selector of rules: `asn:64512`, `ja4:<fingerprint>`, or `type:asn` | `type:ja4` | `type:asn_ja4`. */
export const ruleSelectorSchema = z
  .string()
  .regex(/^(asn:\d+|ja4:\S+|type:(asn|ja4|asn_ja4))$/, { message: "selectors look like 'asn:64512', 'ja4:t13d…' or 'type:asn'" });

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
    /**
     * A file of more allowlist entries, one per line (`#` comments), followed by the live service:
     * edits (or SIGHUP) take effect without a restart (rules/allowlist.ts). Default none.
     */
    allow_file: z.string().min(1).nullable().default(null),
    /**
     * Hysteresis on the way in: consecutive anomalous windows an entity needs before its rule is
     * created. Default 2 (one slide of confirmation: a single odd window makes no rule).
     */
    create_after_windows: z.number().int().min(1).default(2),
    /**
     * Hysteresis on the way out: consecutive calm windows after which a rule is deleted (with a
     * tombstone) before its TTL. 0 leaves it to the TTL. Default 12 (2 minutes at a 10 s slide).
     */
    remove_after_calm_windows: z.number().int().nonnegative().default(12),
    /** Repeat offenders: an entity whose rule comes back within `within_ms` escalates to `action`. */
    escalation: z
      .object({
        /** Default true. */
        enabled: z.boolean().default(true),
        /** The rule count (this one included) within `within_ms` from which the action escalates. Default 2. */
        after_offences: z.number().int().min(2).default(2),
        /** How long an offence is remembered, ms. Default 86 400 000 (a day). */
        within_ms: z.number().int().positive().default(86_400_000),
        /** The escalated action. Default `block`. */
        action: z.enum(['challenge', 'block', 'rate_limit', 'log']).default('block'),
      })
      .strict()
      .prefault({}),
    /** Rules published in shadow mode whatever `mode` says, e.g. `type:asn` (whole networks) or `asn:16509`. */
    shadow: z.array(ruleSelectorSchema).default([]),
    /**
     * Blast-radius preview: before a rule is enforced, the share of recent traffic its entity
     * sends when it is not anomalous (its typical requests per window, over the mean requests
     * per window of all traffic). Above `max_share` the rule is published in shadow mode.
     */
    blast_radius: z
      .object({
        /** Default true. */
        enabled: z.boolean().default(true),
        /** Largest share of all traffic an enforced rule may match in normal times. Default 0.005 (0.5%). */
        max_share: z.number().min(0).max(1).default(0.005),
        /** Windows of total traffic averaged. Default 30. */
        windows: z.number().int().min(1).max(10_000).default(30),
      })
      .strict()
      .prefault({}),
  })
  .strict();

/** Validated rule lifecycle configuration. */
export type RuleLifecycleConfig = z.infer<typeof ruleLifecycleSchema>;

/** A change to the rule set, stamped in event time (CONTRACTS §4, replay NDJSON). */
export type RuleChange =
  | { op: 'upsert'; at: number; rule: EdgeRule }
  | { op: 'delete'; at: number; rule: EdgeRule; why: DeleteReason };

/**
 * Why a rule was deleted: its TTL ran out (`expired`), its entity stayed calm for
 * remove_after_calm_windows (`calm`), or a rule with a higher score took its place at
 * max_active_rules (`displaced`).
 */
export type DeleteReason = 'expired' | 'calm' | 'displaced';

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

/** Checkpoint form of a {@link RuleLifecycle}: the rules in force (in the order they were first created) and what hysteresis, escalation and the blast radius remember. */
export interface RuleLifecycleJSON {
  /** 2; version 1 (rules only) is still read. */
  v: 1 | 2;
  rules: EdgeRule[];
  /** Entities counting anomalous windows towards a rule, by rule id (version 2). */
  pending?: Record<string, PendingJSON>;
  /** Rules created per rule id within escalation.within_ms (version 2). */
  offences?: Record<string, OffenceJSON>;
  /** Total requests of recent windows, oldest first (version 2). */
  traffic?: number[];
}

/** A count of windows or rules, and the event time (window end) of the last one. */
export interface PendingJSON {
  count: number;
  last: number;
}
/** Rules created for one rule id, and when the last was. */
export type OffenceJSON = PendingJSON;

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
  /** Entities anomalous in consecutive windows up to `last` (window end), not yet with a rule: hysteresis on the way in. */
  private readonly pending = new Map<string, PendingJSON>();
  /** Rules created per rule id within escalation.within_ms: repeat offenders. */
  private readonly offences = new Map<string, OffenceJSON>();
  /** Total requests of the most recent windows (blast radius), oldest first. */
  private traffic: number[] = [];
  private allowAsn = new Set<number>();
  private allowJa4 = new Set<string>();
  private readonly slideMs: number;
  /** State keys changed since the last {@link takeStateChanges}. */
  private readonly dirty = new Set<string>();
  /** Rules not created because max_active_rules was reached (a metric). */
  refusedAtCap = 0;
  /** Anomalous verdicts that got no rule because of the allowlist (a metric). */
  allowlisted = 0;
  /** Rules published in shadow mode because of their blast radius (a metric). */
  shadowedByBlastRadius = 0;

  /** `slideMs`: the windows' slide (windows.slide_ms), default 10 000: how far apart consecutive windows end. */
  constructor(
    private config: RuleLifecycleConfig,
    options: { slideMs?: number } = {},
  ) {
    this.slideMs = options.slideMs ?? 10_000;
    if (!(Number.isSafeInteger(this.slideMs) && this.slideMs > 0)) throw new RangeError(`RuleLifecycle: slideMs must be a positive integer, got ${this.slideMs}`);
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

  /**
   * Processes the verdicts of one closed window; returns the changes it causes (upserts, and
   * deletes of rules displaced at the cap). `totalRequests`: the requests of every entity in the
   * window (the sum over its ASN rows), for the blast-radius preview; without it the preview
   * uses the windows seen so far, and with none it lets rules be enforced.
   */
  onWindow(verdicts: readonly Verdict[], totalRequests?: number): RuleChange[] {
    const cfg = this.config;
    if (totalRequests !== undefined && Number.isFinite(totalRequests) && totalRequests >= 0) {
      this.traffic.push(totalRequests);
      if (this.traffic.length > cfg.blast_radius.windows) this.traffic.splice(0, this.traffic.length - cfg.blast_radius.windows);
      this.dirty.add(TRAFFIC_KEY);
    }
    const flagged = verdicts.filter((v) => v.anomalous);
    const coveredAsn = new Set<string>();
    const coveredJa4 = new Set<string>();
    for (const v of flagged) {
      if (v.entity_type !== 'asn_ja4') continue;
      const [asn, ja4] = splitPair(v.entity);
      coveredAsn.add(asn);
      coveredJa4.add(ja4);
    }
    const out: RuleChange[] = [];
    const stillPending = new Set<string>();
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
      if (!existing) {
        // Hysteresis: consecutive anomalous windows before a rule exists.
        const p = this.pending.get(id);
        const count = p && v.window_end - p.last <= this.slideMs ? p.count + 1 : 1;
        if (count < cfg.create_after_windows) {
          this.pending.set(id, { count, last: v.window_end });
          this.dirty.add(PENDING_KEY + id);
          stillPending.add(id);
          continue;
        }
        if (this.active.size >= cfg.max_active_rules) {
          const displaced = this.lowestScored();
          if (!displaced || displaced.score >= v.score) {
            this.refusedAtCap++;
            this.pending.set(id, { count, last: v.window_end });
            this.dirty.add(PENDING_KEY + id);
            stillPending.add(id);
            continue;
          }
          this.active.delete(displaced.rule_id);
          this.dirty.add(RULE_KEY + displaced.rule_id);
          out.push({ op: 'delete', at: v.window_end, rule: displaced, why: 'displaced' });
        }
      }
      const rule = existing ? this.renewed(existing, v) : this.created(v, id, match);
      this.active.set(id, rule);
      this.dirty.add(RULE_KEY + id);
      out.push({ op: 'upsert', at: v.window_end, rule });
    }
    // Entities not anomalous again in this window start their count afresh.
    for (const id of this.pending.keys()) {
      if (stillPending.has(id)) continue;
      this.pending.delete(id);
      this.dirty.add(PENDING_KEY + id);
    }
    return out;
  }

  /** The rule renewed by another anomalous window: its reason stays the one it was created for; `verdict_id` names the latest verdict. */
  private renewed(existing: EdgeRule, v: Verdict): EdgeRule {
    return {
      ...existing,
      updated_at: v.window_end,
      expires_at: Math.max(existing.expires_at, v.window_end + this.config.ttl_ms),
      score: v.score,
      verdict_id: v.verdict_id,
    };
  }

  private created(v: Verdict, id: string, match: RuleMatch): EdgeRule {
    const cfg = this.config;
    this.pending.delete(id);
    this.dirty.add(PENDING_KEY + id);
    let action: RuleAction = cfg.action;
    const notes: string[] = [];
    // Repeat offenders escalate.
    const esc = cfg.escalation;
    const prior = this.offences.get(id);
    const count = prior && v.window_end - prior.last <= esc.within_ms ? prior.count + 1 : 1;
    // Most recent last (delete, then set), so that the oldest go first when the memory is full.
    this.offences.delete(id);
    this.offences.set(id, { count, last: v.window_end });
    this.dirty.add(OFFENCE_KEY + id);
    for (const old of this.offences.keys()) {
      if (this.offences.size <= OFFENCES_PER_RULE * cfg.max_active_rules) break;
      this.offences.delete(old);
      this.dirty.add(OFFENCE_KEY + old);
    }
    if (esc.enabled && count >= esc.after_offences && action !== esc.action) {
      notes.push(`repeat offender: rule ${count} within ${fmtDuration(esc.within_ms)}, escalated from ${action} to ${esc.action}`);
      action = esc.action;
    }
    let mode: RuleMode = cfg.mode;
    if (mode === 'enforce' && this.selected(v.entity_type, match)) {
      mode = 'shadow';
      notes.push('shadow mode by configuration');
    }
    const share = this.blastRadius(v);
    if (mode === 'enforce' && share !== null && share > cfg.blast_radius.max_share) {
      mode = 'shadow';
      this.shadowedByBlastRadius++;
      notes.push(
        `blast radius: its typical traffic is ${(share * 100).toFixed(2)}% of all requests, over ${(cfg.blast_radius.max_share * 100).toFixed(2)}%; published in shadow mode`,
      );
    }
    return {
      rule_id: id,
      match,
      action,
      mode,
      created_at: v.window_end,
      updated_at: v.window_end,
      expires_at: v.window_end + cfg.ttl_ms,
      score: v.score,
      reason: [`${v.entity_type} ${v.entity}: ${v.reasons[0] ?? 'anomalous'}`, ...notes].join('; '),
      rate_limit_rps: action === 'rate_limit' ? cfg.rate_limit_rps : null,
      verdict_id: v.verdict_id,
      entity_type: v.entity_type,
      entity: v.entity,
    };
  }

  /** Share of all traffic the entity sends in normal times (its typical requests over the mean total), or null when unknown. */
  private blastRadius(v: Verdict): number | null {
    if (!this.config.blast_radius.enabled || this.traffic.length === 0) return null;
    const mean = this.traffic.reduce((a, b) => a + b, 0) / this.traffic.length;
    if (!(mean > 0)) return null;
    const typical = v.typical.requests;
    return typeof typical === 'number' && Number.isFinite(typical) && typical > 0 ? typical / mean : 0;
  }

  /** Whether a rule is selected by the `shadow` selectors. */
  private selected(type: EntityType, match: RuleMatch): boolean {
    for (const s of this.config.shadow) {
      const [k, value] = [s.slice(0, s.indexOf(':')), s.slice(s.indexOf(':') + 1)];
      if ((k === 'type' && value === type) || (k === 'asn' && match.asn === Number(value)) || (k === 'ja4' && match.ja4 === value)) return true;
    }
    return false;
  }

  /** The rule in force with the lowest score (the oldest of equals): what a stronger rule displaces at the cap. */
  private lowestScored(): EdgeRule | null {
    let low: EdgeRule | null = null;
    for (const r of this.active.values()) if (!low || r.score < low.score) low = r;
    return low;
  }

  /**
   * Deletes the rules whose expiry the watermark has passed, or whose entity has been calm for
   * remove_after_calm_windows; forgets offences older than escalation.within_ms. Returns the
   * tombstones, in event time.
   */
  onWatermark(watermark: number): RuleChange[] {
    const out: RuleChange[] = [];
    const calm = this.config.remove_after_calm_windows;
    for (const [id, rule] of this.active) {
      const calmAt = calm > 0 ? rule.updated_at + calm * this.slideMs : Number.POSITIVE_INFINITY;
      if (rule.expires_at <= watermark || calmAt <= watermark) {
        this.active.delete(id);
        this.dirty.add(RULE_KEY + id);
        out.push(calmAt < rule.expires_at ? { op: 'delete', at: calmAt, rule, why: 'calm' } : { op: 'delete', at: rule.expires_at, rule, why: 'expired' });
      }
    }
    const within = this.config.escalation.within_ms;
    for (const [id, o] of this.offences) {
      if (watermark !== Number.POSITIVE_INFINITY && o.last + within <= watermark) {
        this.offences.delete(id);
        this.dirty.add(OFFENCE_KEY + id);
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
    return {
      v: 2,
      rules: this.rules.map((r) => structuredClone(r)),
      pending: Object.fromEntries([...this.pending].map(([k, p]) => [k, { ...p }])),
      offences: Object.fromEntries([...this.offences].map(([k, o]) => [k, { ...o }])),
      traffic: [...this.traffic],
    };
  }

  /** A lifecycle with `config`, restored from {@link toJSON} output; throws a TypeError naming what is wrong. */
  static fromJSON(config: RuleLifecycleConfig, v: unknown, options: { slideMs?: number } = {}): RuleLifecycle {
    const rl = new RuleLifecycle(config, options);
    rl.restore(v);
    return rl;
  }

  /**
   * Replaces the whole state with a {@link toJSON} snapshot (version 1, rules only, is still
   * read); throws a TypeError naming what is wrong, and then changes nothing. Rules past their
   * expiry are kept: the next watermark deletes them, with their tombstones.
   */
  restore(v: unknown): void {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) malformed('restore', 'expected an object');
    const o = v as Record<string, unknown>;
    if (o.v !== 1 && o.v !== 2) malformed('restore', `unsupported version 'v': ${JSON.stringify(o.v)} (expected 1 or 2)`);
    const keys = o.v === 1 ? ['v', 'rules'] : ['v', 'rules', 'pending', 'offences', 'traffic'];
    for (const k of Object.keys(o)) if (!keys.includes(k)) malformed('restore', `unknown key '${k}'`);
    if (!Array.isArray(o.rules)) malformed('restore', "'rules' must be an array");
    const active = new Map<string, EdgeRule>();
    o.rules.forEach((x, i) => {
      const rule = parseRule(`restore: rules[${i}]`, x);
      if (active.has(rule.rule_id)) malformed('restore', `rules[${i}] repeats rule_id '${rule.rule_id}'`);
      active.set(rule.rule_id, rule);
    });
    const counted = (name: string, x: unknown): Map<string, PendingJSON> => {
      if (x === undefined && o.v === 1) return new Map();
      if (typeof x !== 'object' || x === null || Array.isArray(x)) malformed('restore', `'${name}' must be an object`);
      return new Map(Object.entries(x).map(([k, c]) => [k, parseCount(`restore: ${name}['${k}']`, c)]));
    };
    const pending = counted('pending', o.pending);
    const offences = counted('offences', o.offences);
    const traffic = o.v === 1 ? [] : parseTraffic('restore', o.traffic);
    this.active.clear();
    for (const [id, rule] of active) this.active.set(id, rule);
    this.pending.clear();
    for (const [id, p] of pending) this.pending.set(id, p);
    this.offences.clear();
    for (const [id, c] of offences) this.offences.set(id, c);
    this.traffic = traffic;
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

  /**
   * The state records changed since the last call, for a compacted changelog: `rule|<id>` (the
   * rule in force, as {@link ruleState}), `pending|<id>` and `offence|<id>` (counts), and
   * `traffic` (recent window totals); `value` null deletes the key.
   */
  takeStateChanges(): { key: string; value: string | null }[] {
    const out: { key: string; value: string | null }[] = [];
    for (const key of [...this.dirty].sort()) {
      let value: unknown = null;
      if (key === TRAFFIC_KEY) value = this.traffic;
      else if (key.startsWith(RULE_KEY)) value = this.active.get(key.slice(RULE_KEY.length)) ?? null;
      else if (key.startsWith(PENDING_KEY)) value = this.pending.get(key.slice(PENDING_KEY.length)) ?? null;
      else if (key.startsWith(OFFENCE_KEY)) value = this.offences.get(key.slice(OFFENCE_KEY.length)) ?? null;
      out.push({ key, value: value === null ? null : JSON.stringify(value) });
    }
    this.dirty.clear();
    return out;
  }

  /**
   * Installs one record of {@link takeStateChanges} read back from the changelog (the last value
   * of its key); throws a TypeError naming what is wrong. Records of any order give the state
   * that wrote them.
   */
  restoreState(key: string, value: string): void {
    const v: unknown = JSON.parse(value);
    if (key === TRAFFIC_KEY) this.traffic = parseTraffic('restoreState', v);
    else if (key.startsWith(RULE_KEY)) this.restoreRule(v);
    else if (key.startsWith(PENDING_KEY)) this.pending.set(key.slice(PENDING_KEY.length), parseCount(`restoreState: '${key}'`, v));
    else if (key.startsWith(OFFENCE_KEY)) this.offences.set(key.slice(OFFENCE_KEY.length), parseCount(`restoreState: '${key}'`, v));
    else malformed('restoreState', `unknown key '${key}'`);
  }

  /** Whether a changelog key is one of {@link takeStateChanges}. */
  static isStateKey(key: string): boolean {
    return key === TRAFFIC_KEY || key.startsWith(RULE_KEY) || key.startsWith(PENDING_KEY) || key.startsWith(OFFENCE_KEY);
  }
}

/** Offences remembered per rule the cap allows: bounded state under a churn of short-lived rules (the oldest are forgotten). */
const OFFENCES_PER_RULE = 10;

/** Changelog keys of {@link RuleLifecycle.takeStateChanges}. */
const RULE_KEY = 'rule|';
const PENDING_KEY = 'pending|';
const OFFENCE_KEY = 'offence|';
const TRAFFIC_KEY = 'traffic';

function parseCount(where: string, v: unknown): PendingJSON {
  const o = v as Record<string, unknown> | null;
  if (typeof o !== 'object' || o === null || Array.isArray(o) || Object.keys(o).some((k) => k !== 'count' && k !== 'last')) malformed(where, 'expected {count, last}');
  if (typeof o.count !== 'number' || !Number.isSafeInteger(o.count) || o.count < 1) malformed(where, `'count' must be a positive integer, got ${JSON.stringify(o.count)}`);
  if (typeof o.last !== 'number' || !Number.isSafeInteger(o.last)) malformed(where, `'last' must be an integer (epoch ms), got ${JSON.stringify(o.last)}`);
  return { count: o.count, last: o.last };
}

function parseTraffic(where: string, v: unknown): number[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'number' || !Number.isFinite(x) || x < 0)) malformed(where, "'traffic' must be an array of request counts ≥ 0");
  return [...(v as number[])];
}

function fmtDuration(ms: number): string {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000} d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  return `${Math.round(ms / 60_000)} min`;
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
    reason: c.op === 'delete' ? `${c.why}: ${r.reason}` : r.reason,
    verdict_id: r.verdict_id,
  };
}
