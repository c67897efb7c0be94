import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Verdict } from '../../detectors/verdict.js';
import { localEndpoints } from '../../infra/index.js';
import { aggregateRow, ClickHouseSink, clickhouseConfigSchema, createTableSql, featuresOf, ruleEventRow, TABLES, verdictRow } from '../../sinks/clickhouse.js';
import { analystFixture, chTime, JA4_NOISY, JA4_SCAN, MODEL_A, MODEL_B, SPECS, type Fixture } from './analyst-fixture.js';
import { JA4_APP, JA4_BOT, JA4_BROWSER } from './helpers.js';
import { runModernClickHouse } from './modern-clickhouse.js';

/**
 * Every ```sql block of docs/analysts.md, run against known data on the real ClickHouse 18.16
 * and on a current ClickHouse (chdb), each checked against the answer it must give. The rows
 * are written through the project's ClickHouseSink twice, as a replay would, so the answers
 * also show that FINAL and argMax see each row once. The doc names tables without a
 * database; the test sets the session's database, as `USE burstwatch` would.
 */

type Row = Record<string, unknown>;
interface DocQuery {
  heading: string;
  sql: string;
}

/** The ```sql blocks of a markdown page, each with the `###` heading above it. */
function docQueries(markdown: string): DocQuery[] {
  const out: DocQuery[] = [];
  let heading = '';
  let block: string[] | null = null;
  for (const line of markdown.split('\n')) {
    if (block) {
      if (line.trim() === '```') {
        out.push({ heading, sql: block.join('\n') });
        block = null;
      } else block.push(line);
    } else if (line.startsWith('### ')) heading = line.slice(4).trim();
    else if (line.trim() === '```sql') block = [];
  }
  return out;
}

const doc = readFileSync(new URL('../../docs/analysts.md', import.meta.url), 'utf8');
const queries = docQueries(doc);
const fx: Fixture = analystFixture(Date.now());
const TTL = 600_000;
const ws = (i: number): string => chTime(fx.windowStart(i));
const we = (i: number): string => chTime(fx.windowEnd(i));
const range = (a: number, b: number): number[] => Array.from({ length: b - a + 1 }, (_, k) => a + k);
const pair = `64512|${JA4_BOT}`;
const lastHour = (v: Verdict): boolean => v.window_start >= fx.base;

/** What each query of the doc must answer on the fixture, keyed by its heading. */
const expectations: Record<string, (rows: Row[]) => void> = {
  'Top anomalous ASNs in the last hour': (rows) => {
    expect(rows).toEqual([
      { asn: '64512', flagged_windows: 12, max_score: 0.94, max_requests: 900, first_flagged: ws(120), last_flagged: we(131) },
      { asn: '4200000001', flagged_windows: 10, max_score: 0.9, max_requests: 700, first_flagged: ws(230), last_flagged: we(239) },
      { asn: '3320', flagged_windows: 1, max_score: 0.82, max_requests: 750, first_flagged: ws(183), last_flagged: we(183) },
    ]);
  },
  "One entity's timeline": (rows) => {
    expect(rows.map((r) => r.window_start)).toEqual(range(0, 239).map(ws));
    expect(rows[0]).toMatchObject({ verdict_score: 0.08, anomalous: 0, requests: 100, typical_requests: 100 });
    expect((rows[0]?.reasons as string[])[0]).toMatch(/^requests 100 in 60 s vs typical 100 /);
    const flagged = rows.filter((r) => r.anomalous === 1);
    expect(flagged.map((r) => r.window_start)).toEqual(range(120, 131).map(ws));
    for (const r of flagged) {
      expect(r).toMatchObject({ verdict_score: 0.94, requests: 900, typical_requests: 100 });
      expect(r.reasons).toEqual([expect.stringMatching(/^requests 900 in 60 s vs typical 100 .*9\.0x typical/), expect.stringMatching(/^population: /)]);
    }
  },
  'Requests per minute of one ASN': (rows) => {
    const minutes = range(0, 39).map((k) => k * 6);
    const attack = (i: number): boolean => i >= 120 && i <= 131;
    expect(rows).toEqual(
      minutes.map((i) => ({
        minute: ws(i),
        requests: attack(i) ? 900 : 100,
        unique_ips: attack(i) ? 220 : 20,
        post_requests: attack(i) ? 800 : 0,
        auth_failures: attack(i) ? 800 : 0,
      })),
    );
  },
  "Detector scores behind one entity's flagged windows": (rows) => {
    expect(rows).toEqual([
      { detector: 'robust_deviation.requests', flagged_windows: 12, mean_score: 0.98, max_detector_score: 0.98 },
      { detector: 'volume', flagged_windows: 12, mean_score: 0.98, max_detector_score: 0.98 },
      { detector: 'shift', flagged_windows: 12, mean_score: 0.9, max_detector_score: 0.9 },
      { detector: 'onset', flagged_windows: 12, mean_score: 0.88, max_detector_score: 0.88 },
      { detector: 'population', flagged_windows: 12, mean_score: 0.7, max_detector_score: 0.7 },
    ]);
  },
  'Which detector drove the flagged verdicts': (rows) => {
    // volume: the 64512 attack (ASN, pair, JA4: 36), 3320 and the scan; population: the
    // 4200000001 attack (ASN, pair, JA4: 30); shift: the noisy fingerprint (3).
    expect(rows).toEqual([
      { top_detector: 'volume', flagged_verdicts: 38 },
      { top_detector: 'population', flagged_verdicts: 30 },
      { top_detector: 'shift', flagged_verdicts: 3 },
    ]);
  },
  'Population outliers that were not flagged': (rows) => {
    expect(rows).toEqual([{ entity_type: 'asn_ja4', entity: `4200000001|${JA4_BROWSER}`, windows: 240, max_population: 0.95, max_volume: 0.1 }]);
  },
  'Verdicts with their window aggregates': (rows) => {
    expect(rows).toEqual(
      range(120, 131).map((i) => ({
        window_start: ws(i),
        verdict_score: 0.97,
        requests: 810,
        typical_requests: 10,
        unique_ips: 202,
        post_requests: 800,
        status_401: 800,
        requests_per_ip_max: 40,
        top_paths: ['/login', '/'],
      })),
    );
  },
  'Anomalous entities per window': (rows) => {
    const byWindow = new Map<number, { asns: number; ja4s: number; pairs: number; flagged_entities: number }>();
    for (const v of fx.verdicts.filter((x) => x.anomalous && lastHour(x))) {
      const c = byWindow.get(v.window_start) ?? { asns: 0, ja4s: 0, pairs: 0, flagged_entities: 0 };
      c[v.entity_type === 'asn' ? 'asns' : v.entity_type === 'ja4' ? 'ja4s' : 'pairs']++;
      c.flagged_entities++;
      byWindow.set(v.window_start, c);
    }
    // Windows 10, 80, 150 (noisy), 120-131 (3 each), 183, 225, 230-239 (3 each).
    expect(byWindow.size).toBe(27);
    expect(rows).toEqual([...byWindow].sort((a, b) => a[0] - b[0]).map(([start, c]) => ({ window_start: chTime(start), ...c })));
    expect(rows.find((r) => r.window_start === ws(125))).toEqual({ window_start: ws(125), asns: 1, ja4s: 1, pairs: 1, flagged_entities: 3 });
  },
  'New entities first flagged in the last 24 hours': (rows) => {
    // Not the ASN 64512 nor its pair with the bot fingerprint: both were flagged 3 days ago.
    expect(rows).toEqual([
      { entity_type: 'ja4', entity: JA4_NOISY, first_flagged: ws(10), flagged_windows: 3, max_score: 0.85 },
      { entity_type: 'ja4', entity: JA4_BOT, first_flagged: ws(120), flagged_windows: 12, max_score: 0.91 },
      { entity_type: 'asn', entity: '3320', first_flagged: ws(183), flagged_windows: 1, max_score: 0.82 },
      { entity_type: 'ja4', entity: JA4_SCAN, first_flagged: ws(225), flagged_windows: 1, max_score: 0.86 },
      { entity_type: 'asn', entity: '4200000001', first_flagged: ws(230), flagged_windows: 10, max_score: 0.9 },
      { entity_type: 'asn_ja4', entity: `4200000001|${JA4_APP}`, first_flagged: ws(230), flagged_windows: 10, max_score: 0.93 },
      { entity_type: 'ja4', entity: JA4_APP, first_flagged: ws(230), flagged_windows: 10, max_score: 0.88 },
    ]);
  },
  'Latest state of every entity, without FINAL': (rows) => {
    const expected = SPECS.map((s) => {
      const flag = s.flag(239);
      return { entity_type: s.type, entity: s.entity, last_window: ws(239), last_score: flag ? flag.score : 0.08, last_anomalous: flag ? 1 : 0, windows_last_hour: 240 - s.from };
    }).sort((a, b) => (a.entity_type === b.entity_type ? (a.entity < b.entity ? -1 : 1) : a.entity_type < b.entity_type ? -1 : 1));
    expect(rows).toEqual(expected);
  },
  'False-positive review: entities flagged once and never again': (rows) => {
    expect(rows.map((r) => [r.entity_type, r.entity, r.flagged_at, r.max_score])).toEqual([
      ['asn', '3320', ws(183), 0.82],
      ['ja4', JA4_SCAN, ws(225), 0.86],
    ]);
    expect(rows[0]?.flagged_reasons).toEqual([expect.stringMatching(/^requests 750 /), expect.stringMatching(/^surge: /), expect.stringMatching(/^population: /)]);
  },
  'False-positive review: flagged during a surge': (rows) => {
    expect(rows).toEqual([
      { entity_type: 'asn', entity: '3320', window_start: ws(183), verdict_score: 0.82, surge_reasons: [expect.stringMatching(/^surge: the traffic around it .* rose 3\.00x/)] },
    ]);
  },
  'False-positive review: rules let go without a renewal': (rows) => {
    const verdictAt = (entity: string, i: number): string => (fx.verdicts.find((v) => v.entity === entity && v.window_start === fx.windowStart(i)) as Verdict).verdict_id;
    const one = (ruleId: string, entity: string, i: number, why: string, deletedAt: number) => ({
      rule_id: ruleId, created_at: we(i), deleted_because: why, deleted_at: chTime(deletedAt), rule_action: 'challenge', created_by_verdict: verdictAt(entity, i),
    });
    expect(rows.map(({ rule_reason: _, ...r }) => r)).toEqual([
      one(`ja4:${JA4_NOISY}`, JA4_NOISY, 10, 'expired', fx.windowEnd(10) + TTL),
      one(`ja4:${JA4_NOISY}`, JA4_NOISY, 80, 'expired', fx.windowEnd(80) + TTL),
      one(`ja4:${JA4_NOISY}`, JA4_NOISY, 150, 'expired', fx.windowEnd(150) + TTL),
      one('asn:3320', '3320', 183, 'expired', fx.windowEnd(183) + TTL),
      one(`ja4:${JA4_SCAN}`, JA4_SCAN, 225, 'calm', fx.windowEnd(225) + 120_000),
    ]);
    expect(rows[3]?.rule_reason).toMatch(/^asn 3320: requests 750 in 60 s/);
  },
  'Rules in force now': (rows) => {
    // The scan's rule has not expired, but it was deleted (calm): not in force.
    const first = fx.rules.find((c) => c.rule.rule_id === `asn_ja4:4200000001|${JA4_APP}`);
    expect(rows).toEqual([
      {
        rule_id: `asn_ja4:4200000001|${JA4_APP}`,
        rule_match: JSON.stringify({ asn: 4200000001, ja4: JA4_APP }),
        rule_action: 'challenge',
        rule_mode: 'enforce',
        rule_created_at: we(230),
        rule_expires_at: chTime(fx.windowEnd(239) + TTL),
        rule_score: 0.93,
        rule_reason: first?.rule.reason,
      },
    ]);
  },
  'Rules created for a given JA4': (rows) => {
    const reason = expect.stringMatching(new RegExp(`^asn_ja4 64512\\|${JA4_BOT}: requests 810 in 60 s`));
    const common = { rule_id: `asn_ja4:${pair}`, deleted_because: 'expired', rule_action: 'challenge', rule_mode: 'enforce', rule_reason: reason };
    expect(rows).toEqual([
      { ...common, created_at: chTime(fx.old + 60_000), last_expiry: chTime(fx.old + 60_000 + TTL), upserts: 1 },
      { ...common, created_at: we(120), last_expiry: chTime(fx.windowEnd(131) + TTL), upserts: 12 },
    ]);
  },
  'Noisy rules': (rows) => {
    expect(rows).toEqual([
      { rule_id: `ja4:${JA4_NOISY}`, times_created: 3, upserts: 3, deletes: 3, first_event: we(10), last_event: chTime(fx.windowEnd(150) + TTL) },
      { rule_id: `asn_ja4:${pair}`, times_created: 2, upserts: 13, deletes: 2, first_event: chTime(fx.old + 60_000), last_event: chTime(fx.windowEnd(131) + TTL) },
    ]);
  },
  "Share of an ASN's traffic covered by its pair rules": (rows) => {
    // From the window that created the rule on; the ASN's browser pair has no rule.
    expect(rows).toEqual(range(230, 239).map((i) => ({ window_start: ws(i), asn_requests: 700, covered_requests: 640, covered_share: 0.914 })));
  },
  'Model and pipeline versions compared': (rows) => {
    const of = (model: string) => fx.verdicts.filter((v) => v.model_version === model && lastHour(v));
    const a = of(MODEL_A);
    const b = of(MODEL_B);
    expect([a.length, b.length]).toEqual([1440, 1460]);
    const mean = (vs: Verdict[]): number => vs.reduce((s, v) => s + v.score, 0) / vs.length;
    expect(rows.map(({ mean_score: _, ...r }) => r)).toEqual([
      { model_version: MODEL_A, pipeline_version: '0.1.0', first_window: ws(0), last_window: ws(119), scored_windows: 1440, flagged_windows: 2, flag_rate: 0.0014 },
      { model_version: MODEL_B, pipeline_version: '0.2.0', first_window: ws(120), last_window: ws(239), scored_windows: 1460, flagged_windows: 69, flag_rate: 0.0473 },
    ]);
    expect(rows[0]?.mean_score).toBeCloseTo(mean(a), 3);
    expect(rows[1]?.mean_score).toBeCloseTo(mean(b), 3);
  },
};

/** The rows of the fixture as the sink writes them, for a server reached without the sink. */
function rowsOf(f: Fixture): Record<keyof typeof TABLES, Record<string, unknown>[]> {
  return { verdicts: f.verdicts.map(verdictRow), window_aggregates: f.aggregates.map(aggregateRow), rule_events: f.rules.map(ruleEventRow) };
}

async function writeThroughSink(database: string): Promise<void> {
  const sink = new ClickHouseSink(clickhouseConfigSchema.parse({ url: localEndpoints.clickhouseUrl, database, batch_rows: 1000 }));
  await sink.connect();
  try {
    await sink.writeAggregates(fx.aggregates);
    await sink.writeVerdicts(fx.verdicts);
    await sink.writeRuleChanges(fx.rules);
    await sink.flush();
  } finally {
    await sink.close();
  }
}

describe('docs/analysts.md', () => {
  it('holds at least twelve queries, each under its own heading, each with an expectation here', () => {
    expect(queries.length).toBeGreaterThanOrEqual(12);
    const headings = queries.map((q) => q.heading);
    expect(new Set(headings).size).toBe(headings.length);
    expect(headings.filter((h) => !(h in expectations))).toEqual([]);
    expect(Object.keys(expectations).filter((h) => !headings.includes(h))).toEqual([]);
  });
});

describe('analyst queries on the real ClickHouse 18.16', () => {
  const database = `it_analysts_${randomBytes(4).toString('hex')}`;
  // The doc's queries name tables without a database: the client's session database stands in
  // for `USE burstwatch`. 64-bit integers as JSON numbers, so expectations read plainly.
  const ch: ClickHouseClient = createClient({
    url: localEndpoints.clickhouseUrl,
    database,
    clickhouse_settings: { output_format_json_quote_64bit_integers: 0 },
  });
  const admin = createClient({ url: localEndpoints.clickhouseUrl });

  beforeAll(async () => {
    // Twice, as a replay (or a retried batch) would write it.
    await writeThroughSink(database);
    await writeThroughSink(database);
  });

  afterAll(async () => {
    await admin.command({ query: `DROP DATABASE IF EXISTS ${database}` });
    await admin.command({ query: `DROP DATABASE IF EXISTS ${database}_old` });
    await ch.close();
    await admin.close();
  });

  it('holds every row twice, and once under FINAL', async () => {
    const counts = async (final: string): Promise<number[]> =>
      Promise.all(
        (['verdicts', 'window_aggregates', 'rule_events'] as const).map(async (t) => {
          const rs = await ch.query({ query: `SELECT count() AS n FROM ${t} ${final}`, format: 'JSONEachRow' });
          return ((await rs.json()) as { n: number }[])[0]?.n ?? -1;
        }),
      );
    const expected = [fx.verdicts.length, fx.aggregates.length, fx.rules.length];
    expect(await counts('FINAL')).toEqual(expected);
    // Background merges may already have collapsed some duplicates; never below one copy each.
    const raw = await counts('');
    raw.forEach((n, k) => expect(n).toBeGreaterThanOrEqual(expected[k] as number));
  });

  for (const q of queries) {
    it(q.heading, async () => {
      const rs = await ch.query({ query: q.sql, format: 'JSONEachRow' });
      const rows = (await rs.json()) as Row[];
      const check = expectations[q.heading];
      expect(check, `no expectation for '${q.heading}'`).toBeDefined();
      check?.(rows);
    });
  }

  it('migrates tables of an older burstwatch: the new columns appear, the detector scores for old rows too', async () => {
    const old = `${database}_old`;
    const features = featuresOf('18.16.1');
    const added = /^\s+(volume_score|onset_score|population_score|shift_score|why|rate_limit_rps) /;
    await admin.command({ query: `CREATE DATABASE ${old}` });
    for (const table of ['verdicts', 'rule_events'] as const) {
      const ddl = createTableSql(old, table, features).split('\n').filter((l) => !added.test(l)).join('\n');
      await admin.command({ query: ddl });
    }
    const flagged = fx.verdicts.find((v) => v.entity === pair && v.anomalous) as Verdict;
    await admin.insert({ table: `${old}.verdicts`, values: [verdictRow(flagged)], format: 'JSONEachRow' });
    await writeThroughSinkTo(old, flagged);
    const rs = await admin.query({
      query: `SELECT volume_score, population_score, shift_score, onset_score FROM ${old}.verdicts FINAL`,
      format: 'JSONEachRow',
    });
    expect(await rs.json()).toEqual([{ volume_score: 0.98, population_score: 0.7, shift_score: 0.9, onset_score: 0.88 }]);
    const cols = await admin.query({
      query: `SELECT table, name FROM system.columns WHERE database = '${old}' AND name IN ('why', 'rate_limit_rps', 'population_score') ORDER BY table, name`,
      format: 'JSONEachRow',
    });
    expect(await cols.json()).toEqual([
      { table: 'rule_events', name: 'rate_limit_rps' },
      { table: 'rule_events', name: 'why' },
      { table: 'verdicts', name: 'population_score' },
    ]);
  });
});

/** Connects a sink to `database` (migrating its tables) and writes one verdict again. */
async function writeThroughSinkTo(database: string, v: Verdict): Promise<void> {
  const sink = new ClickHouseSink(clickhouseConfigSchema.parse({ url: localEndpoints.clickhouseUrl, database }));
  await sink.connect();
  try {
    await sink.writeVerdicts([v]);
    await sink.flush();
  } finally {
    await sink.close();
  }
}

describe('analyst queries on a current ClickHouse (chdb)', { timeout: 300_000 }, () => {
  it('gives the same answers', () => {
    const database = 'it_analysts';
    const [version] = runModernClickHouse(['SELECT version() AS v']);
    const features = featuresOf((JSON.parse(version as string) as { v: string }).v);
    expect(features.lowCardinality).toBe(true);
    const rows = rowsOf(fx);
    const setup = [`CREATE DATABASE ${database}`];
    for (const table of Object.keys(TABLES) as (keyof typeof TABLES)[]) {
      setup.push(createTableSql(database, table, features, 30));
      const body = rows[table].map((r) => JSON.stringify(r)).join('\n');
      // Twice, as a replay would write it.
      setup.push(`INSERT INTO ${database}.${table} FORMAT JSONEachRow\n${body}`, `INSERT INTO ${database}.${table} FORMAT JSONEachRow\n${body}`);
    }
    setup.push(`USE ${database}`, 'SET output_format_json_quote_64bit_integers = 0');
    const out = runModernClickHouse([...setup, ...queries.map((q) => q.sql)]);
    expect(out.slice(0, setup.length).filter((o) => typeof o !== 'string')).toEqual([]);
    const failures: string[] = [];
    queries.forEach((q, k) => {
      const res = out[setup.length + k];
      if (typeof res !== 'string') {
        failures.push(`${q.heading}: ${res?.error ?? 'no result'}`);
        return;
      }
      const parsed = res
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as Row);
      try {
        expectations[q.heading]?.(parsed);
      } catch (err) {
        failures.push(`${q.heading}: ${(err as Error).message}`);
      }
    });
    expect(failures).toEqual([]);
  });
});
