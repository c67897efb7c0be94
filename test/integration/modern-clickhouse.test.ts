import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { EntityAggregate } from '../../consumers/aggregates.js';
import { verdictId, type Verdict } from '../../detectors/verdict.js';
import { stateDir } from '../../infra/index.js';
import { createTableSql, featuresOf, ruleEventRow, TABLES, verdictRow } from '../../sinks/clickhouse.js';

/**
 * The same DDL and rows as the ClickHouse sink, on a current ClickHouse (26.x) embedded by chdb
 * from PyPI, since Debian only packages 18.16. Checks that the version gate turns on
 * LowCardinality and TTL there, that JSONEachRow rows insert, and that a row written twice
 * collapses under FINAL. The chdb virtualenv is created under the state dir on first use.
 */
const script = fileURLToPath(new URL('./modern-clickhouse.py', import.meta.url));

function python(): string {
  const venv = join(stateDir(), 'chdb-venv');
  const bin = join(venv, 'bin', 'python');
  if (!existsSync(bin)) {
    mkdirSync(stateDir(), { recursive: true });
    execFileSync('python3', ['-m', 'venv', venv], { stdio: 'inherit' });
    execFileSync(join(venv, 'bin', 'pip'), ['install', '--quiet', 'chdb==4.4.0'], { stdio: 'inherit' });
  }
  return bin;
}

function run(statements: string[]): (string | { error: string })[] {
  const res = spawnSync(python(), [script], { input: JSON.stringify(statements), encoding: 'utf8', maxBuffer: 64 << 20 });
  if (res.status !== 0) throw new Error(`chdb failed: ${res.stderr}`);
  return JSON.parse(res.stdout) as (string | { error: string })[];
}

describe('ClickHouse DDL and rows on a current server (chdb)', { timeout: 300_000 }, () => {
  it('creates every table with LowCardinality and TTL, inserts rows, and deduplicates under FINAL', () => {
    const [version] = run(['SELECT version() AS v']);
    const v = (JSON.parse(version as string) as { v: string }).v;
    const features = featuresOf(v);
    expect(features).toMatchObject({ lowCardinality: true, ttl: true });

    const verdict: Verdict = {
      verdict_id: verdictId('asn', '64512', 1_793_608_800_000, 1_793_608_860_000), entity_type: 'asn', entity: '64512', scope: { asn: 64512 },
      window_start: 1_793_608_800_000, window_end: 1_793_608_860_000, score: 0.97, anomalous: true, detectors: { 'robust_deviation.requests': 0.97 },
      reasons: ["requests 900 in 60 s vs typical 30 — it's \"quoted\""], features: { requests: 900 }, typical: { requests: 30 },
      requests: 900, model_version: 'm', pipeline_version: 'p',
    };
    const agg = new EntityAggregate('asn').toRow('64512', 1_793_608_800_000, 1_793_608_860_000, 0);
    const aggregateRow = { ...agg, requests: 900, window_start: 1_793_608_800, window_end: 1_793_608_860 };
    const ruleRow = ruleEventRow({
      op: 'upsert', at: 1_793_608_860_000,
      rule: { rule_id: 'asn:64512', match: { asn: 64512 }, action: 'challenge', mode: 'enforce', created_at: 1_793_608_860_000, updated_at: 1_793_608_860_000,
        expires_at: 1_793_609_460_000, score: 0.97, reason: 'r', rate_limit_rps: null, verdict_id: verdict.verdict_id, entity_type: 'asn', entity: '64512' },
    });
    const rows: Record<keyof typeof TABLES, Record<string, unknown>> = { verdicts: verdictRow(verdict), window_aggregates: aggregateRow, rule_events: ruleRow };
    const statements = ['CREATE DATABASE IF NOT EXISTS burstwatch'];
    for (const table of Object.keys(TABLES) as (keyof typeof TABLES)[]) {
      statements.push(createTableSql('burstwatch', table, features, 30));
      const line = JSON.stringify(rows[table]);
      // The same row twice, as a replay or a retried insert would write it.
      statements.push(`INSERT INTO burstwatch.${table} FORMAT JSONEachRow\n${line}\n${line}`);
      statements.push(`SELECT count() AS n FROM burstwatch.${table} FINAL`);
      statements.push(`SELECT engine_full FROM system.tables WHERE database = 'burstwatch' AND name = '${table}'`);
    }
    statements.push("SELECT reasons[1] AS r, typical_values[indexOf(typical_names, 'requests')] AS t FROM burstwatch.verdicts FINAL");
    const out = run(statements);
    const errors = out.filter((o) => typeof o !== 'string');
    expect(errors).toEqual([]);
    for (let i = 0; i < 3; i++) {
      const count = JSON.parse(out[3 + i * 4] as string) as { n: string | number };
      expect(Number(count.n)).toBe(1);
      expect(out[4 + i * 4] as string).toMatch(/ReplacingMergeTree\(inserted_at\).*TTL/);
    }
    expect(JSON.parse(out.at(-1) as string)).toEqual({ r: verdict.reasons[0], t: 30 });
    const columns = run([...statements.slice(0, 2), "SELECT type FROM system.columns WHERE database = 'burstwatch' AND table = 'verdicts' AND name = 'entity_type'"]);
    expect(columns.at(-1)).toMatch(/LowCardinality\(String\)/);
  });
});
