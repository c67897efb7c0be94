import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { EntityType } from '../consumers/aggregates.js';
import type { Verdict } from '../detectors/verdict.js';
import type { EdgeRule } from '../schemas/index.js';
import { RuleLifecycle, ruleLifecycleSchema, type RuleChange, type RuleLifecycleJSON } from './lifecycle.js';

/** fast-check runs are seeded so a failure replays the same way. */
const FC = { seed: 20240601, numRuns: 200 };

function verdict(entity_type: EntityType, entity: string, end: number, anomalous = true, score = 0.97): Verdict {
  return {
    verdict_id: `${entity}@${end}`, entity_type, entity, window_start: end - 60_000, window_end: end, score, anomalous,
    detectors: {}, reasons: ['requests 900 vs typical 30'], features: {}, typical: {}, requests: 900, model_version: 'm', pipeline_version: 'p',
  };
}

describe('RuleLifecycle', () => {
  const config = ruleLifecycleSchema.parse({ ttl_ms: 60_000 });

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

describe('RuleLifecycle checkpoints', () => {
  const config = ruleLifecycleSchema.parse({ ttl_ms: 60_000, max_active_rules: 4, action: 'rate_limit', allow: ['asn:7'] });

  it('snapshots the rules in force as versioned JSON, whole or one rule at a time', () => {
    const rl = new RuleLifecycle(config);
    rl.onWindow([verdict('asn_ja4', '64512|t13d_x', 100_000), verdict('ja4', 't13d_y', 100_000)]);
    const snap = rl.toJSON();
    expect(snap).toMatchObject({ v: 1, rules: [{ rule_id: 'asn_ja4:64512|t13d_x', rate_limit_rps: 1 }, { rule_id: 'ja4:t13d_y' }] });
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
   * A lifecycle restored at a cut, from its snapshot or from the compacted log of its own
   * changes (upserts set a key, deletes remove it) restored rule by rule in another order,
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
      gap: fc.integer({ min: 0, max: 40_000 }),
    });
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
            out.push(verdict(v.type, entity, ends[i] as number, v.anomalous, v.score));
          }
          return out;
        };
        const run = (rl: RuleLifecycle, i: number): RuleChange[] => [...rl.onWatermark(ends[i] as number), ...rl.onWindow(windowAt(i))];
        const a = new RuleLifecycle(config);
        const log = new Map<string, EdgeRule>();
        for (let i = 0; i < cut; i++) {
          for (const c of run(a, i)) {
            log.delete(c.rule.rule_id);
            if (c.op === 'upsert') log.set(c.rule.rule_id, JSON.parse(JSON.stringify(c.rule)) as EdgeRule);
          }
        }
        const whole = RuleLifecycle.fromJSON(config, JSON.parse(JSON.stringify(a.toJSON())));
        const perRule = new RuleLifecycle(config);
        for (const r of [...log.values()].reverse()) perRule.restoreRule(r);
        expect(new Map(perRule.rules.map((r) => [r.rule_id, r]))).toEqual(new Map(a.rules.map((r) => [r.rule_id, r])));
        for (let i = cut; i < steps.length; i++) {
          // Byte for byte: sinks serialise the rules.
          const expected = JSON.stringify(run(a, i));
          expect(JSON.stringify(run(whole, i))).toBe(expected);
          expect(JSON.stringify(run(perRule, i))).toBe(expected);
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
    ['another version', () => ({ v: 2, rules: [] }), /unsupported version 'v': 2/],
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
