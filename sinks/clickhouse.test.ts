import { describe, expect, it } from 'vitest';
import type { Verdict } from '../detectors/verdict.js';
import { createTableSql, featuresOf, isRetriableClickHouseError, ruleEventRow, TABLES, verdictRow } from './clickhouse.js';

describe('ClickHouse DDL', () => {
  it('uses only what 18.16 knows on 18.16, and LowCardinality and TTL on modern servers', () => {
    const old = featuresOf('18.16.1');
    const modern = featuresOf('24.8.4.13');
    expect(old).toMatchObject({ lowCardinality: false, ttl: false });
    expect(modern).toMatchObject({ lowCardinality: true, ttl: true });
    for (const table of Object.keys(TABLES) as (keyof typeof TABLES)[]) {
      const a = createTableSql('burstwatch', table, old, 30);
      expect(a).not.toMatch(/LowCardinality|TTL|DateTime64/);
      expect(a).toMatch(/ENGINE = ReplacingMergeTree\(inserted_at\)\nPARTITION BY toYYYYMM\(\w+\)\nORDER BY \(/);
      const b = createTableSql('burstwatch', table, modern, 30);
      expect(b).toMatch(/LowCardinality\(String\)/);
      expect(b).toMatch(/TTL \w+ \+ INTERVAL 30 DAY$/);
    }
  });

  it('orders verdicts and aggregates by what analysts filter on: entity, then time', () => {
    expect(TABLES.verdicts.orderBy).toBe('entity_type, entity, window_start, window_end');
    expect(TABLES.window_aggregates.orderBy).toBe('entity_type, entity, window_start, window_end');
  });

  it('gives analysts one column per detector score, computed by the server from the arrays (NULL where the detector did not look)', () => {
    const ddl = createTableSql('burstwatch', 'verdicts', featuresOf('18.16.1'));
    for (const d of ['volume', 'onset', 'population', 'shift']) {
      expect(ddl).toContain(`${d}_score Nullable(Float64) MATERIALIZED if(has(detector_names, '${d}'), detector_scores[indexOf(detector_names, '${d}')], NULL)`);
    }
    // Materialized columns are never sent by the sink.
    expect(Object.keys(verdictRow({ verdict_id: 'x', entity_type: 'asn', entity: '1', scope: { asn: 1 }, window_start: 0, window_end: 60_000, score: 0, anomalous: false,
      detectors: { volume: 0.1 }, reasons: [], features: {}, typical: {}, requests: 0, model_version: 'm', pipeline_version: 'p' }))).not.toContain('volume_score');
  });

  it('classifies retriable errors like a ClickHouse sink should', () => {
    expect(isRetriableClickHouseError({ code: '252', message: 'Too many parts' })).toBe(true);
    expect(isRetriableClickHouseError({ code: 'ECONNREFUSED', message: 'connect ECONNREFUSED 127.0.0.1:18123' })).toBe(true);
    expect(isRetriableClickHouseError({ code: '27', message: 'Cannot parse input' })).toBe(false);
    expect(isRetriableClickHouseError({ code: '60', message: 'Table does not exist' })).toBe(false);
  });
});

describe('ClickHouse rows', () => {
  it('maps a verdict to columns, keeping names and values aligned and dropping unknown typicals', () => {
    const v: Verdict = {
      verdict_id: 'x', entity_type: 'asn_ja4', entity: '64512|t13d', scope: { asn: 64512, ja4: 't13d' }, window_start: 1_793_608_800_000, window_end: 1_793_608_860_000,
      score: 0.93, anomalous: true, detectors: { 'robust_deviation.requests': 0.93 }, reasons: ["it's 'quoted'"],
      features: { requests: 900, unique_ips: 300 }, typical: { requests: 30, unique_ips: Number.NaN }, requests: 900, model_version: 'm', pipeline_version: 'p',
    };
    expect(verdictRow(v)).toMatchObject({
      window_start: 1_793_608_800, window_end: 1_793_608_860, anomalous: 1,
      detector_names: ['robust_deviation.requests'], detector_scores: [0.93],
      feature_names: ['requests', 'unique_ips'], feature_values: [900, 300],
      typical_names: ['requests'], typical_values: [30], reasons: ["it's 'quoted'"],
    });
  });

  it('maps a rule change, with 0 / empty for unconstrained match keys', () => {
    const row = ruleEventRow({
      op: 'upsert', at: 1_000_000,
      rule: { rule_id: 'ja4:t', match: { ja4: 't' }, action: 'challenge', mode: 'shadow', created_at: 1_000_000, updated_at: 1_000_000, expires_at: 1_600_000,
        score: 0.9, reason: 'r', rate_limit_rps: null, verdict_id: null, entity_type: 'ja4', entity: 't' },
    });
    expect(row).toMatchObject({ rule_id: 'ja4:t', op: 'upsert', event_time: 1000, match_asn: 0, match_ja4: 't', match_json: '{"ja4":"t"}', expires_at: 1600, verdict_id: '', why: '', rate_limit_rps: 0 });
  });

  it('says why a rule was deleted, and keeps a rate limit', () => {
    const row = ruleEventRow({
      op: 'delete', at: 1_600_000, why: 'expired',
      rule: { rule_id: 'asn:4200000001', match: { asn: 4_200_000_001 }, action: 'rate_limit', mode: 'enforce', created_at: 1_000_000, updated_at: 1_000_000, expires_at: 1_600_000,
        score: 0.9, reason: 'r', rate_limit_rps: 2, verdict_id: 'v', entity_type: 'asn', entity: '4200000001' },
    });
    expect(row).toMatchObject({ op: 'delete', why: 'expired', match_asn: 4_200_000_001, action: 'rate_limit', rate_limit_rps: 2, reason: 'r', verdict_id: 'v' });
  });
});
