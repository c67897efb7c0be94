import { describe, expect, it } from 'vitest';
import type { EntityType } from '../consumers/aggregates.js';
import type { Verdict } from '../detectors/verdict.js';
import { RuleLifecycle, ruleLifecycleSchema } from './lifecycle.js';

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
