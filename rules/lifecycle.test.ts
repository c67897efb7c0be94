import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { EntityType } from '../consumers/aggregates.js';
import { scopeOf, type Verdict } from '../detectors/verdict.js';
import type { EdgeRule } from '../schemas/index.js';
import { RuleLifecycle, ruleChangeLine, ruleLifecycleSchema, type RuleChange, type RuleLifecycleJSON } from './lifecycle.js';

/** fast-check runs are seeded so a failure replays the same way. */
const FC = { seed: 20240601, numRuns: 200 };

function verdict(entity_type: EntityType, entity: string, end: number, anomalous = true, score = 0.97): Verdict {
  return {
    verdict_id: `${entity}@${end}`, entity_type, entity, scope: scopeOf(entity_type, entity), window_start: end - 60_000, window_end: end, score, anomalous,
    detectors: {}, reasons: ['requests 900 vs typical 30'], features: {}, typical: {}, requests: 900, model_version: 'm', pipeline_version: 'p',
  };
}

describe('RuleLifecycle', () => {
  // One window makes a rule, and only the TTL removes it: the hysteresis has its own tests below.
  const config = ruleLifecycleSchema.parse({ ttl_ms: 60_000, create_after_windows: 1, remove_after_calm_windows: 0 });

  it('creates, renews and expires a rule in event time', () => {
    const rl = new RuleLifecycle(config);
    const [created] = rl.onWindow([verdict('asn_ja4', '64512|t13d_x', 100_000)]);
    expect(created).toMatchObject({ op: 'upsert', rule: { rule_id: 'asn_ja4:64512|t13d_x', match: { asn: 64512, ja4: 't13d_x' }, created_at: 100_000, expires_at: 160_000 } });
    const [renewed] = rl.onWindow([verdict('asn_ja4', '64512|t13d_x', 110_000)]);
    expect(renewed?.rule).toMatchObject({ created_at: 100_000, updated_at: 110_000, expires_at: 170_000 });
    expect(rl.onWatermark(169_999)).toEqual([]);
    const [gone] = rl.onWatermark(170_000);
    expect(gone).toMatchObject({ op: 'delete', at: 170_000, rule: { rule_id: 'asn_ja4:64512|t13d_x' } });
    expect(rl.rules).toEqual([]);
  });

  it('prefers the asn×ja4 pair over its whole ASN or fingerprint in the same window', () => {
    const rl = new RuleLifecycle(config);
    const changes = rl.onWindow([verdict('asn', '64512', 1), verdict('ja4', 't13d_x', 1), verdict('asn_ja4', '64512|t13d_x', 1), verdict('asn', '7', 1)]);
    expect(changes.map((c) => c.rule.rule_id).sort()).toEqual(['asn:7', 'asn_ja4:64512|t13d_x']);
  });

  it('never makes a rule for an allowlisted ASN, and takes allowlist changes live', () => {
    const rl = new RuleLifecycle({ ...config, allow: ['asn:15169'] });
    expect(rl.onWindow([verdict('asn', '15169', 1), verdict('asn_ja4', '15169|t13d_g', 1)])).toEqual([]);
    expect(rl.allowlisted).toBe(1); // the pair; its ASN verdict is covered by the pair
    rl.setAllowlist([]);
    expect(rl.onWindow([verdict('asn', '15169', 2)])).toHaveLength(1);
    expect(() => rl.setAllowlist(['asn:abc'])).toThrow(/asn:15169/);
  });

  it('ignores calm verdicts and caps the number of active rules', () => {
    const rl = new RuleLifecycle({ ...config, max_active_rules: 2 });
    expect(rl.onWindow([verdict('asn', '1', 1, false)])).toEqual([]);
    rl.onWindow([verdict('asn', '1', 1), verdict('asn', '2', 1), verdict('asn', '3', 1, true, 0.5)]);
    expect(rl.rules.map((r) => r.rule_id).sort()).toEqual(['asn:1', 'asn:2']);
    expect(rl.refusedAtCap).toBe(1);
  });
});

describe('RuleLifecycle policy', () => {
  const defaults = ruleLifecycleSchema.parse({});
  const ids = (changes: readonly RuleChange[]): string[] => changes.map((c) => `${c.op} ${c.rule.rule_id}${c.op === 'delete' ? ` (${c.why})` : ''}`);

  it('creates a rule only after create_after_windows consecutive anomalous windows', () => {
    const rl = new RuleLifecycle(defaults); // 2 windows
    expect(rl.onWindow([verdict('asn_ja4', '64512|t13d_x', 100_000)])).toEqual([]);
    // A window in between without it: the count starts again.
    expect(rl.onWindow([], 0)).toEqual([]);
    expect(rl.onWindow([verdict('asn_ja4', '64512|t13d_x', 120_000)])).toEqual([]);
    expect(ids(rl.onWindow([verdict('asn_ja4', '64512|t13d_x', 130_000)]))).toEqual(['upsert asn_ja4:64512|t13d_x']);
    expect(rl.rules[0]).toMatchObject({ created_at: 130_000, action: 'challenge', mode: 'enforce' });
    // A gap of more than one slide between two anomalous windows also restarts it.
    rl.onWindow([verdict('asn', '7', 200_000)]);
    expect(rl.onWindow([verdict('asn', '7', 220_000)])).toEqual([]);
  });

  it('deletes a rule after remove_after_calm_windows calm windows, before its TTL, and renewals keep it', () => {
    const rl = new RuleLifecycle({ ...defaults, create_after_windows: 1, remove_after_calm_windows: 3 });
    rl.onWindow([verdict('asn', '64512', 100_000)]);
    rl.onWindow([verdict('asn', '64512', 110_000)]); // renewed: calm counts from here
    expect(rl.onWatermark(139_999)).toEqual([]);
    const [gone] = rl.onWatermark(140_000);
    expect(gone).toMatchObject({ op: 'delete', at: 140_000, why: 'calm', rule: { rule_id: 'asn:64512' } });
    expect(ruleChangeLine(gone as RuleChange).reason).toMatch(/^calm: asn 64512: /);
    // 0 leaves it to the TTL (600 s by default).
    const ttlOnly = new RuleLifecycle({ ...defaults, create_after_windows: 1, remove_after_calm_windows: 0 });
    ttlOnly.onWindow([verdict('asn', '64512', 100_000)]);
    expect(ttlOnly.onWatermark(699_999)).toEqual([]);
    expect(ttlOnly.onWatermark(700_000)[0]).toMatchObject({ why: 'expired', at: 700_000 });
  });

  it('escalates a repeat offender to block within escalation.within_ms, and forgets after it', () => {
    const rl = new RuleLifecycle(ruleLifecycleSchema.parse({ create_after_windows: 1, remove_after_calm_windows: 1, escalation: { within_ms: 3_600_000 } }));
    const offend = (t: number): EdgeRule => {
      rl.onWatermark(t);
      rl.onWindow([verdict('asn_ja4', '64512|t13d_x', t)]);
      const r = rl.ruleState('asn_ja4:64512|t13d_x') as EdgeRule;
      rl.onWatermark(t + 10_000); // calm: deleted
      expect(rl.rules).toEqual([]);
      return r;
    };
    expect(offend(100_000).action).toBe('challenge');
    const second = offend(1_000_000);
    expect(second.action).toBe('block');
    expect(second.reason).toMatch(/repeat offender: rule 2 within 1 h, escalated from challenge to block/);
    // More than an hour after the last one: a first offence again.
    expect(offend(1_000_000 + 3_600_001).action).toBe('challenge');
    const off = new RuleLifecycle(ruleLifecycleSchema.parse({ create_after_windows: 1, remove_after_calm_windows: 1, escalation: { enabled: false } }));
    off.onWindow([verdict('asn', '1', 100_000)]);
    off.onWatermark(110_000);
    off.onWindow([verdict('asn', '1', 120_000)]);
    expect(off.rules[0]?.action).toBe('challenge');
  });

  it('remembers at most 10 offences per rule the cap allows, forgetting the oldest', () => {
    const rl = new RuleLifecycle(ruleLifecycleSchema.parse({ create_after_windows: 1, remove_after_calm_windows: 1, max_active_rules: 2 }));
    for (let i = 0; i < 25; i++) {
      rl.onWatermark(100_000 + i * 20_000);
      rl.onWindow([verdict('asn', String(i), 100_000 + i * 20_000)]);
    }
    const offences = Object.keys(rl.toJSON().offences ?? {});
    expect(offences).toHaveLength(20);
    expect(offences).not.toContain('asn:4');
    expect(offences).toContain('asn:5');
  });

  it('publishes selected rules in shadow mode, and rules whose blast radius is too wide', () => {
    const rl = new RuleLifecycle({ ...defaults, create_after_windows: 1, shadow: ['type:ja4'] });
    const typical = (v: Verdict, requests: number): Verdict => ({ ...v, typical: { requests } });
    // 10,000 requests a window in all; max_share 0.5%.
    const changes = rl.onWindow(
      [typical(verdict('asn_ja4', '64512|t13d_x', 100_000), 20), typical(verdict('asn', '16509', 100_000), 80), typical(verdict('ja4', 't13d_y', 100_000), 5)],
      10_000,
    );
    const byId = new Map(changes.map((c) => [c.rule.rule_id, c.rule]));
    expect(byId.get('asn_ja4:64512|t13d_x')?.mode).toBe('enforce'); // 0.2%
    expect(byId.get('asn:16509')).toMatchObject({ mode: 'shadow', reason: expect.stringMatching(/blast radius: its typical traffic is 0\.80% of all requests, over 0\.50%; published in shadow mode$/) as unknown });
    expect(byId.get('ja4:t13d_y')).toMatchObject({ mode: 'shadow', reason: expect.stringMatching(/shadow mode by configuration$/) as unknown });
    expect(rl.shadowedByBlastRadius).toBe(1);
    // A new entity (no typical traffic) is enforced; with no traffic seen yet there is no preview.
    expect(rl.onWindow([typical(verdict('asn', '64999', 110_000), 0)], 10_000)[0]?.rule.mode).toBe('enforce');
    expect(new RuleLifecycle({ ...defaults, create_after_windows: 1 }).onWindow([typical(verdict('asn', '16509', 100_000), 80)])[0]?.rule.mode).toBe('enforce');
  });

  it('at max_active_rules, a stronger rule displaces the weakest; a weaker one is refused', () => {
    const rl = new RuleLifecycle({ ...defaults, create_after_windows: 1, max_active_rules: 2 });
    rl.onWindow([verdict('asn', '1', 100_000, true, 0.9), verdict('asn', '2', 100_000, true, 0.85)]);
    expect(ids(rl.onWindow([verdict('asn', '3', 110_000, true, 0.95)]))).toEqual(['delete asn:2 (displaced)', 'upsert asn:3']);
    expect(rl.onWindow([verdict('asn', '4', 120_000, true, 0.8)])).toEqual([]);
    expect(rl.refusedAtCap).toBe(1);
    expect(rl.rules.map((r) => r.rule_id).sort()).toEqual(['asn:1', 'asn:3']);
  });
});

describe('RuleLifecycle checkpoints', () => {
  const config = ruleLifecycleSchema.parse({ ttl_ms: 60_000, max_active_rules: 4, action: 'rate_limit', allow: ['asn:7'], create_after_windows: 1, remove_after_calm_windows: 0 });

  it('snapshots the rules in force as versioned JSON, whole or one rule at a time', () => {
    const rl = new RuleLifecycle(config);
    rl.onWindow([verdict('asn_ja4', '64512|t13d_x', 100_000), verdict('ja4', 't13d_y', 100_000)]);
    const snap = rl.toJSON();
    expect(snap).toMatchObject({ v: 2, rules: [{ rule_id: 'asn_ja4:64512|t13d_x', rate_limit_rps: 1 }, { rule_id: 'ja4:t13d_y' }] });
    expect(rl.ruleState('ja4:t13d_y')).toEqual(snap.rules[1]);
    expect(rl.ruleState('ja4:nope')).toBeNull();
    const copy = RuleLifecycle.fromJSON(config, JSON.parse(JSON.stringify(snap)));
    expect(copy.rules).toEqual(rl.rules);
    expect(copy.toJSON()).toEqual(snap);
    // A snapshot is a copy: later renewals do not reach into it.
    rl.onWindow([verdict('ja4', 't13d_y', 110_000)]);
    expect(snap.rules[1]?.updated_at).toBe(100_000);
  });

  it('forgets a rule without a tombstone', () => {
    const rl = new RuleLifecycle(config);
    rl.onWindow([verdict('asn', '1', 1)]);
    expect(rl.forgetRule('asn:1')).toBe(true);
    expect(rl.forgetRule('asn:1')).toBe(false);
    expect(rl.expireAll()).toEqual([]);
  });

  /**
   * A lifecycle restored at a cut, from its snapshot or from the compacted log of its state
   * records (takeStateChanges) restored key by key in another order,
   * makes exactly the changes the original makes for the same later verdicts and watermarks.
   */
  it('restored from a snapshot or from its own change log, continues identically', () => {
    const step = fc.record({
      verdicts: fc.array(
        fc.record({
          type: fc.constantFrom<EntityType>('asn', 'ja4', 'asn_ja4'),
          n: fc.integer({ min: 0, max: 9 }),
          anomalous: fc.boolean(),
          score: fc.double({ min: 0, max: 1, noNaN: true }),
        }),
        { maxLength: 6 },
      ),
      // Mostly consecutive windows, so hysteresis counts carry across the cut.
      gap: fc.constantFrom(0, 0, 0, 10_000, 40_000),
      total: fc.integer({ min: 0, max: 20_000 }),
    });
    // The defaults' hysteresis, escalation and blast radius, with a calm removal before the TTL.
    const full = ruleLifecycleSchema.parse({ ttl_ms: 60_000, max_active_rules: 4, action: 'challenge', allow: ['asn:7'], remove_after_calm_windows: 3 });
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 30 }), fc.nat(), (steps, cutSeed) => {
        const cut = cutSeed % (steps.length + 1);
        const ends: number[] = [];
        let t = 100_000;
        for (const s of steps) ends.push((t += 10_000 + s.gap));
        const windowAt = (i: number): Verdict[] => {
          const seen = new Set<string>();
          const out: Verdict[] = [];
          for (const v of steps[i]?.verdicts ?? []) {
            const entity = v.type === 'asn' ? String(v.n) : v.type === 'ja4' ? `t13d_${v.n}` : `${v.n % 3}|t13d_${v.n}`;
            if (seen.has(`${v.type}/${entity}`)) continue;
            seen.add(`${v.type}/${entity}`);
            // Typical traffic from nothing to a fifth of a busy window: some rules cross the blast radius.
            out.push({ ...verdict(v.type, entity, ends[i] as number, v.anomalous, v.score), typical: { requests: (v.n * 37) % 4_000 } });
          }
          return out;
        };
        const run = (rl: RuleLifecycle, i: number): RuleChange[] => [...rl.onWatermark(ends[i] as number), ...rl.onWindow(windowAt(i), steps[i]?.total)];
        const a = new RuleLifecycle(full);
        // The compacted changelog of its state records (the rules stage writes these).
        const log = new Map<string, string>();
        for (let i = 0; i < cut; i++) {
          run(a, i);
          for (const { key, value } of a.takeStateChanges()) {
            log.delete(key); // a rewritten key moves to the end, as on the log
            if (value !== null) log.set(key, value);
          }
        }
        const whole = RuleLifecycle.fromJSON(full, JSON.parse(JSON.stringify(a.toJSON())));
        const perKey = new RuleLifecycle(full);
        for (const [key, value] of [...log].reverse()) perKey.restoreState(key, value);
        expect(perKey.toJSON()).toEqual({ ...a.toJSON(), rules: expect.arrayContaining(a.rules) as unknown });
        for (let i = cut; i < steps.length; i++) {
          // Byte for byte: sinks serialise the rules.
          const expected = JSON.stringify(run(a, i));
          expect(JSON.stringify(run(whole, i))).toBe(expected);
          expect(JSON.stringify(run(perKey, i))).toBe(expected);
        }
        expect(JSON.stringify(whole.expireAll())).toBe(JSON.stringify(a.expireAll()));
      }),
      FC,
    );
  });

  const good = (): EdgeRule => {
    const rl = new RuleLifecycle(config);
    rl.onWindow([verdict('asn_ja4', '64512|t13d_x', 100_000)]);
    return rl.rules[0] as EdgeRule;
  };
  it.each<[string, () => unknown, RegExp]>([
    ['a non-object', () => [], /RuleLifecycle.restore: expected an object/],
    ['another version', () => ({ v: 3, rules: [] }), /unsupported version 'v': 3 \(expected 1 or 2\)/],
    ['an unknown key', () => ({ v: 1, rules: [], counters: {} }), /unknown key 'counters'/],
    ['rules that are not an array', () => ({ v: 1, rules: {} }), /'rules' must be an array/],
    ['a repeated rule_id', () => ({ v: 1, rules: [good(), good()] }), /rules\[1\] repeats rule_id 'asn_ja4:64512\|t13d_x'/],
    ['an unknown action', () => ({ v: 1, rules: [{ ...good(), action: 'drop' }] }), /rules\[0\]: action: /],
    ['an empty match', () => ({ v: 1, rules: [{ ...good(), match: {} }] }), /rules\[0\]: match: at least one match key must be set/],
    ['a rule_id that is not its entity', () => ({ v: 1, rules: [{ ...good(), rule_id: 'asn:1' }] }), /rules\[0\]: rule_id: rule_id must be ruleIdOf/],
    ['a missing expiry', () => ({ v: 1, rules: [{ ...good(), expires_at: undefined }] }), /rules\[0\]: expires_at: /],
  ])('restore rejects %s with a TypeError and keeps its rules', (_name, input, message) => {
    const rl = new RuleLifecycle(config);
    rl.onWindow([verdict('asn', '1', 1)]);
    const v = JSON.parse(JSON.stringify(input())) as RuleLifecycleJSON;
    expect(() => rl.restore(v)).toThrow(TypeError);
    expect(() => rl.restore(v)).toThrow(message);
    expect(rl.rules.map((r) => r.rule_id)).toEqual(['asn:1']);
  });

  it('restoreRule rejects a malformed rule with a TypeError', () => {
    const rl = new RuleLifecycle(config);
    expect(() => rl.restoreRule({ ...good(), score: 2 })).toThrow(/RuleLifecycle.restoreRule: score: /);
    expect(() => rl.restoreRule(null)).toThrow(TypeError);
    expect(rl.rules).toEqual([]);
  });
});
