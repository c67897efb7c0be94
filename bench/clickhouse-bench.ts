/**
 * The clickhouse section (issue 5 bench): insert throughput of verdict rows through the real
 * `ClickHouseSink` (its default batch_rows, fed one window's verdicts at a time as stage 2 does,
 * then flushed), against a same-process peer that inserts the same rows, already converted with
 * `verdictRow`, with a bare @clickhouse/client JSONEachRow insert in the same batches. Each run
 * writes into a database of its own, made for it and dropped once its `SELECT count() FINAL` has
 * been checked; rounds alternate (sink, peer, sink, peer, …) and best and median are reported.
 * Knobs: BENCH_CLICKHOUSE_ROWS (verdicts, default 200 000), BENCH_CLICKHOUSE_ROUNDS (default 3).
 */
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { median } from 'simple-statistics';
import type { EntityType } from '../consumers/aggregates.js';
import { scopeOf, verdictId, type Verdict } from '../detectors/verdict.js';
import { localEndpoints } from '../infra/index.js';
import { packageVersion } from '../pipeline.js';
import { Random } from '../random.js';
import { clickhouseConfigSchema, ClickHouseSink, createTableSql, featuresOf, verdictRow, type ServerFeatures } from '../sinks/clickhouse.js';

const num = (name: string, dflt: number): number => (process.env[name] === undefined ? dflt : Number(process.env[name]));
const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');

/** What the default scorer writes into model_version (detectors/entity-scorer.ts). */
const MODEL_VERSION = 'ensemble/3 rd(h=60 w=18 rel=0.1) if(w=30 n=256 r=6 s=0) t=0.8 vw=0.6 adapt=30 surge=on';
const SLIDE_MS = 10_000;
const SIZE_MS = 60_000;

interface Entity {
  type: EntityType;
  entity: string;
  /** Typical requests per 60 s window. */
  typical: number;
}

const hex = (r: Random, n: number): string => {
  let s = '';
  for (let i = 0; i < n; i++) s += '0123456789abcdef'[r.int(16)];
  return s;
};
const fmtNum = (x: number): string => (Number.isInteger(x) ? String(x) : x.toFixed(1));

/**
 * The entities of a replay of `burstwatch simulate` (its mix: about 2 350 ASN×JA4 pairs, 236 ASNs
 * and 14 fingerprints, so 86% of verdicts are pairs, 13% ASNs, under 1% fingerprints).
 */
function makeEntities(r: Random): Entity[] {
  const ja4s = Array.from({ length: 14 }, () => `t13d${10 + r.int(90)}${10 + r.int(90)}${['h2', 'h1', '00'][r.int(3)]}_${hex(r, 12)}_${hex(r, 12)}`);
  const asns = new Set<number>();
  while (asns.size < 236) asns.add(1000 + r.int(400_000));
  const asnList = [...asns];
  const out: Entity[] = [];
  for (const j of ja4s) out.push({ type: 'ja4', entity: j, typical: r.logNormal(400, 1) + 10 });
  for (const a of asnList) out.push({ type: 'asn', entity: String(a), typical: r.logNormal(30, 1.2) + 1 });
  const pairs = new Set<string>();
  while (pairs.size < 2350) {
    // A few fingerprints carry most pairs, as browsers do.
    const j = ja4s[Math.min(ja4s.length - 1, Math.floor(r.exp() * 3))] as string;
    pairs.add(`${asnList[r.int(asnList.length)]}|${j}`);
  }
  for (const p of pairs) out.push({ type: 'asn_ja4', entity: p, typical: r.logNormal(6, 1.2) + 1 });
  return out;
}

/**
 * `n` verdicts shaped like EntityScorer's (detectors/entity-scorer.ts): detector sets, reasons,
 * features and typicals as a replay of simulated traffic has them. Windows slide by 10 s; in each,
 * every entity is active with probability 0.85 (so ids are unique: one verdict per entity and window).
 * Returned by window, as stage 2 hands them to its sinks.
 */
export function makeVerdicts(n: number, seed: number): Verdict[][] {
  const r = new Random(seed, 0);
  const entities = makeEntities(r);
  const start0 = Date.UTC(2026, 10, 2);
  const pipelineVersion = packageVersion();
  const windows: Verdict[][] = [];
  let total = 0;
  for (let w = 0; total < n; w++) {
    const windowStart = start0 + w * SLIDE_MS;
    const windowEnd = windowStart + SIZE_MS;
    const verdicts: Verdict[] = [];
    for (const e of entities) {
      if (total >= n) break;
      if (r.next() >= 0.85) continue;
      total++;
      const anomalous = r.next() < 0.002;
      const typical = e.typical;
      const requests = Math.max(1, anomalous ? Math.round(typical * (3 + r.exp() * 5)) : r.logNormal(typical, 0.3));
      const lastSlide = Math.max(0, Math.round((requests / 6) * (anomalous ? 3 : Math.exp(0.3 * r.normal()))));
      const uniqueIps = Math.max(1, Math.round(requests * (0.5 + 0.5 * r.next())));
      const features: Record<string, number> = {
        requests,
        requests_last_slide: lastSlide,
        unique_ips: uniqueIps,
        requests_per_ip_max: 1 + r.int(4),
        requests_per_ip_mean: requests / uniqueIps,
        auth_failure_share: anomalous ? 0.3 + 0.6 * r.next() : r.next() < 0.1 ? r.next() * 0.05 : 0,
        post_share: anomalous ? 0.3 + 0.6 * r.next() : r.next() < 0.2 ? r.next() * 0.1 : 0,
        unique_paths: Math.max(1, Math.round(Math.min(requests, 5 + r.exp() * 20))),
      };
      const rise = r.next() < 0.4 ? 1 + r.exp() * 0.06 : 1;
      if (rise > 1) features.expected_rise = rise;
      const z = anomalous ? 6 + r.exp() * 10 : r.normal() * 1.2;
      const spread = Math.max(1, typical * 0.25);
      const volume = anomalous ? 0.85 + 0.15 * r.next() : Math.min(0.79, Math.abs(r.normal()) * 0.12);
      const detectors: Record<string, number> = { 'robust_deviation.requests': Math.min(1, volume * (0.6 + 0.4 * r.next())), volume };
      const onset = anomalous || r.next() < 0.04;
      const population = anomalous || r.next() < 0.22;
      if (onset) detectors.onset = anomalous ? volume : volume * r.next();
      if (population) detectors.population = anomalous ? 0.6 + 0.4 * r.next() : r.next() * 0.3;
      const typicals: Record<string, number> = { requests: typical };
      if (onset) typicals.requests_last_slide = typical / 6;
      if (anomalous) {
        detectors.shift = 0.8 + 0.2 * r.next();
        Object.assign(typicals, { unique_ips: Math.round(typical * 0.8), requests_per_ip_max: 2, requests_per_ip_mean: 1.1, auth_failure_share: 0, post_share: 0.01, unique_paths: Math.min(typical, 25) });
      }
      const reasons = [
        `requests ${requests} in 60 s vs typical ${fmtNum(typical)} (median of last ${12 + r.int(49)} windows, spread ${spread.toFixed(1)}): ` +
          `${(requests / typical).toFixed(1)}x typical, ${z >= 0 ? '+' : ''}${z.toFixed(1)} robust deviations`,
      ];
      if (rise > 1.05) reasons.push(`surge: the traffic around it (same network, same fingerprint) rose ${rise.toFixed(2)}x; against that, ${z >= 0 ? '+' : ''}${(z * 0.9).toFixed(1)} robust deviations`);
      if (onset && (anomalous || r.next() < 0.3)) {
        reasons.push(`onset: ${lastSlide} requests in the last 10 s vs typical ${fmtNum(typical / 6)} (median of last 32 slides, spread ${(spread / 3).toFixed(1)}): ${(lastSlide / Math.max(0.5, typical / 6)).toFixed(1)}x typical, +${(z * 2).toFixed(1)} robust deviations`);
      }
      const score = anomalous ? volume : volume * volume;
      if (anomalous) {
        reasons.push(
          `population: outlier among active ${e.type} entities this window (score ${(detectors.population as number).toFixed(2)}): post_share ${Math.round((features.post_share as number) * 100)}% vs 0.0%, auth_failure_share ${Math.round((features.auth_failure_share as number) * 100)}% vs 0.0%`,
          `unique_ips ${uniqueIps} vs typical ${Math.round(typical * 0.8)}`,
          `auth_failure_share ${Math.round((features.auth_failure_share as number) * 100)}% vs typical 0.0%`,
          `post_share ${Math.round((features.post_share as number) * 100)}% vs typical 1.0%`,
        );
      }
      verdicts.push({
        verdict_id: verdictId(e.type, e.entity, windowStart, windowEnd),
        entity_type: e.type,
        entity: e.entity,
        scope: scopeOf(e.type, e.entity),
        window_start: windowStart,
        window_end: windowEnd,
        score,
        anomalous,
        detectors,
        reasons,
        features,
        typical: typicals,
        requests,
        model_version: MODEL_VERSION,
        pipeline_version: pipelineVersion,
      });
    }
    windows.push(verdicts);
  }
  return windows;
}

/** The sink's batches for `windows` fed one window at a time: an insert whenever its buffer holds ≥ batchRows rows, and the rest at flush. */
function sinkBatches(windows: readonly (readonly Verdict[])[], batchRows: number): number[] {
  const sizes: number[] = [];
  let held = 0;
  for (const w of windows) {
    held += w.length;
    if (held >= batchRows) {
      sizes.push(held);
      held = 0;
    }
  }
  if (held > 0) sizes.push(held);
  return sizes;
}

async function countFinal(ch: ClickHouseClient, database: string): Promise<number> {
  const rs = await ch.query({ query: `SELECT count() AS n FROM ${database}.verdicts FINAL`, format: 'JSONEachRow' });
  return Number(((await rs.json()) as { n: string }[])[0]?.n);
}

/** The markdown of the clickhouse section (without its title). */
export async function runClickHouseBench(): Promise<string> {
  const n = num('BENCH_CLICKHOUSE_ROWS', 200_000);
  const rounds = num('BENCH_CLICKHOUSE_ROUNDS', 3);
  const url = localEndpoints.clickhouseUrl;
  const settingsOf = (database: string) => clickhouseConfigSchema.parse({ url, database });
  const batchRows = settingsOf('x').batch_rows;
  const admin = createClient({ url, clickhouse_settings: {} });
  let version: string;
  try {
    const rs = await admin.query({ query: 'SELECT version() AS v', format: 'JSONEachRow' });
    version = ((await rs.json()) as { v: string }[])[0]?.v ?? '?';
  } catch (err) {
    await admin.close();
    throw new Error(`no ClickHouse at ${url} (${(err as Error).message}): start it with \`node dist/cli/main.js infra up\``);
  }
  const features: ServerFeatures = featuresOf(version);
  const load0 = loadavg();

  const g0 = performance.now();
  const windows = makeVerdicts(n, 21);
  const genMs = performance.now() - g0;
  const all = windows.flat();
  const rows = all.map(verdictRow);
  const batches = sinkBatches(windows, batchRows);
  const bytes = rows.reduce((s, row) => s + Buffer.byteLength(JSON.stringify(row)) + 1, 0);
  const byType = (t: EntityType): number => all.filter((v) => v.entity_type === t).length;
  const anomalous = all.filter((v) => v.anomalous).length;

  const id = randomBytes(4).toString('hex');
  const sinkRates: number[] = [];
  const peerRates: number[] = [];
  const checks: string[] = [];
  const databases: string[] = [];
  const peer = createClient({ url, request_timeout: settingsOf('x').request_timeout_ms, clickhouse_settings: {} });
  try {
    for (let round = 0; round < rounds; round++) {
      // The sink: connect() (DDL) is not timed; writeVerdicts per window, then flush.
      const sinkDb = `bw_bench_ch_${id}_s${round}`;
      databases.push(sinkDb);
      const sink = new ClickHouseSink(settingsOf(sinkDb));
      await sink.connect();
      let t0 = performance.now();
      for (const w of windows) await sink.writeVerdicts(w);
      await sink.flush();
      const sinkMs = performance.now() - t0;
      await sink.close();
      if (sink.stats.inserted.verdicts !== n) throw new Error(`clickhouse bench: the sink reports ${sink.stats.inserted.verdicts} rows inserted, expected ${n}`);
      const sinkCount = await countFinal(admin, sinkDb);
      await admin.command({ query: `DROP DATABASE IF EXISTS ${sinkDb}` });

      // The peer: the same table, the same rows already converted, the same batches.
      const peerDb = `bw_bench_ch_${id}_p${round}`;
      databases.push(peerDb);
      await admin.command({ query: `CREATE DATABASE IF NOT EXISTS ${peerDb}` });
      await admin.command({ query: createTableSql(peerDb, 'verdicts', features) });
      t0 = performance.now();
      let at = 0;
      for (const size of batches) {
        await peer.insert({ table: `${peerDb}.verdicts`, values: rows.slice(at, at + size), format: 'JSONEachRow' });
        at += size;
      }
      const peerMs = performance.now() - t0;
      const peerCount = await countFinal(admin, peerDb);
      await admin.command({ query: `DROP DATABASE IF EXISTS ${peerDb}` });

      if (sinkCount !== n || peerCount !== n) throw new Error(`clickhouse bench: SELECT count() FINAL gave ${sinkCount} (sink) and ${peerCount} (peer), expected ${n}`);
      checks.push(`${sinkCount}/${peerCount}`);
      sinkRates.push(n / (sinkMs / 1000));
      peerRates.push(n / (peerMs / 1000));
      process.stderr.write(`bench: clickhouse round ${round + 1}/${rounds}: sink ${sinkMs.toFixed(0)} ms, peer ${peerMs.toFixed(0)} ms\n`);
    }
  } finally {
    for (const db of databases) await admin.command({ query: `DROP DATABASE IF EXISTS ${db}` }).catch(() => undefined);
    await peer.close();
    await admin.close();
  }
  const load1 = loadavg();
  const best = (xs: number[]): number => Math.max(...xs);
  const ratioBest = best(sinkRates) / best(peerRates);
  const ratioMedian = median(sinkRates) / median(peerRates);
  const perRound = sinkRates.map((s, i) => (s / (peerRates[i] as number)).toFixed(2)).join(', ');

  return `Server: ClickHouse ${version} (the local server of \`burstwatch infra\`, http://127.0.0.1), table DDL as the sink creates it on this version (ReplacingMergeTree, LowCardinality ${features.lowCardinality ? 'on' : 'off'}, four MATERIALIZED per-detector score columns).

${fmt(n)} verdicts made by a seeded generator (\`Random\` seed 21) shaped like \`EntityScorer\`'s on a replay of simulated traffic: ${fmt(byType('asn_ja4'))} ASN×JA4, ${fmt(byType('asn'))} ASN and ${fmt(byType('ja4'))} fingerprint verdicts over ${windows.length} windows (60 s, sliding 10 s; about ${fmt(n / windows.length)} entities each), ${anomalous} anomalous; two to five detector scores, one to seven reasons, eight or nine features each; ${(bytes / 1e6).toFixed(0)} MB as JSONEachRow (${fmt(bytes / n)} bytes a row). Generating them took ${(genMs / 1000).toFixed(1)} s (not timed below).

- **sink**: \`ClickHouseSink\` with its defaults (batch_rows ${fmt(batchRows)}), \`writeVerdicts\` called once per window as stage 2 does, then \`flush()\`; the clock covers \`verdictRow\` conversion, buffering and the inserts (${batches.length} inserts of ${fmt(Math.min(...batches))}–${fmt(Math.max(...batches))} rows), not \`connect()\`'s DDL.
- **peer**: the same rows, converted with \`verdictRow\` before the clock starts, sent with a bare \`@clickhouse/client\` \`insert({ format: 'JSONEachRow' })\` in the same ${batches.length} batches, into a table made by the same DDL.

Each run writes into a database of its own, made just before and dropped just after; rounds alternate (sink, peer, sink, …) in the same process. Every run was checked with \`SELECT count() FROM verdicts FINAL\` = ${fmt(n)} (sink/peer per round: ${checks.join(', ')}).

| | best rows/s | median rows/s | all rounds (rows/s) |
|---|---:|---:|---|
| sink (\`ClickHouseSink\`) | ${fmt(best(sinkRates))} | ${fmt(median(sinkRates))} | ${sinkRates.map(fmt).join(', ')} |
| peer (bare client, rows pre-converted) | ${fmt(best(peerRates))} | ${fmt(median(peerRates))} | ${peerRates.map(fmt).join(', ')} |

**sink / peer throughput ratio: ${ratioBest.toFixed(2)} (best), ${ratioMedian.toFixed(2)} (median)**; per round ${perRound}. 1.00 would mean the sink costs nothing beyond the client's insert of ready rows: what the sink does on top is \`verdictRow\` (keys and values of four records per verdict), its per-table buffer and its retry wrapper. Both send from this process and the server runs on the same 2 cores, so the absolute figures share the CPU with the server's parsing and merges. Load average (1/5/15 min) at the start ${load0.map((x) => x.toFixed(2)).join('/')}, at the end ${load1.map((x) => x.toFixed(2)).join('/')}.
`;
}
