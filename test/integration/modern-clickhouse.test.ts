import { describe, expect, it } from 'vitest';
import { EntityAggregate } from '../../consumers/aggregates.js';
import { verdictId, type Verdict } from '../../detectors/verdict.js';
import { aggregateRow, createTableSql, featuresOf, ruleEventRow, TABLES, verdictRow } from '../../sinks/clickhouse.js';
import { runModernClickHouse as run } from './modern-clickhouse.js';

/**
 * The same DDL and rows as the ClickHouse sink, on a current ClickHouse (26.x) embedded by chdb
 * from PyPI, since Debian only packages 18.16. Checks that the version gate turns on
 * LowCardinality and TTL there, that JSONEachRow rows insert, and that a row written twice
 * collapses under FINAL. (test/integration/analyst-queries.test.ts runs the analysts' queries
 * there too.)
 */
describe('ClickHouse DDL and rows on a current server (chdb)', { timeout: 300_000 }, () => {
  it('creates every table with LowCardinality and TTL, inserts rows, and deduplicates under FINAL', () => {
    const [version] = run(['SELECT version() AS v']);
    const v = (JSON.parse(version as string) as { v: string }).v;
    const features = featuresOf(v);
    expect(features).toMatchObject({ lowCardinality: true, ttl: true });

    const verdict: Verdict = {
      verdict_id: verdictId('asn', '64512', 1_793_608_800_000, 1_793_608_860_000), entity_type: 'asn', entity: '64512', scope: { asn: 64512 },
      window_start: 1_793_608_800_000, window_end: 1_793_608_860_000, score: 0.97, anomalous: true, detectors: { 'robust_deviation.requests': 0.97, volume: 0.95 },
      reasons: ["requests 900 in 60 s vs typical 30 — it's \"quoted\""], features: { requests: 900 }, typical: { requests: 30 },
      requests: 900, model_version: 'm', pipeline_version: 'p',
    };
    const agg = new EntityAggregate('asn').toRow('64512', 1_793_608_800_000, 1_793_608_860_000, 0);
    const aggregate = aggregateRow({ ...agg, requests: 900 });
    const ruleRow = ruleEventRow({
      op: 'upsert', at: 1_793_608_860_000,
      rule: { rule_id: 'asn:64512', match: { asn: 64512 }, action: 'challenge', mode: 'enforce', created_at: 1_793_608_860_000, updated_at: 1_793_608_860_000,
        expires_at: 1_793_609_460_000, score: 0.97, reason: 'r', rate_limit_rps: null, verdict_id: verdict.verdict_id, entity_type: 'asn', entity: '64512' },
    });
    const rows: Record<keyof typeof TABLES, Record<string, unknown>> = { verdicts: verdictRow(verdict), window_aggregates: aggregate, rule_events: ruleRow };
    const statements = ['CREATE DATABASE IF NOT EXISTS burstwatch'];
    for (const table of Object.keys(TABLES) as (keyof typeof TABLES)[]) {
      statements.push(createTableSql('burstwatch', table, features, 30));
      const line = JSON.stringify(rows[table]);
      // The same row twice, as a replay or a retried insert would write it.
      statements.push(`INSERT INTO burstwatch.${table} FORMAT JSONEachRow\n${line}\n${line}`);
      statements.push(`SELECT count() AS n FROM burstwatch.${table} FINAL`);
      statements.push(`SELECT engine_full FROM system.tables WHERE database = 'burstwatch' AND name = '${table}'`);
    }
    // The per-detector columns are computed by the server: a score where the detector looked, NULL where it did not.
    statements.push(
      "SELECT reasons[1] AS r, typical_values[indexOf(typical_names, 'requests')] AS t, volume_score AS vs, population_score AS ps FROM burstwatch.verdicts FINAL",
    );
    const out = run(statements);
    const errors = out.filter((o) => typeof o !== 'string');
    expect(errors).toEqual([]);
    for (let i = 0; i < 3; i++) {
      const count = JSON.parse(out[3 + i * 4] as string) as { n: string | number };
      expect(Number(count.n)).toBe(1);
      expect(out[4 + i * 4] as string).toMatch(/ReplacingMergeTree\(inserted_at\).*TTL/);
    }
    expect(JSON.parse(out.at(-1) as string)).toEqual({ r: verdict.reasons[0], t: 30, vs: 0.95, ps: null });
    const columns = run([...statements.slice(0, 2), "SELECT type FROM system.columns WHERE database = 'burstwatch' AND table = 'verdicts' AND name = 'entity_type'"]);
    expect(columns.at(-1)).toMatch(/LowCardinality\(String\)/);
  });
});
