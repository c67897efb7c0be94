import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from '@clickhouse/client';
import { Kafka } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startService, type Service } from '../../cli/service.js';
import { parseConfig, type Config } from '../../config.js';
import { localEndpoints } from '../../infra/index.js';
import { encodeSingleObject } from '../../schemas/codec.js';
import { edgeRuleFromAvro, edgeRuleType, requestLogType, type EdgeRule, type RequestLog } from '../../schemas/index.js';
import { BURST_START, JA4_BOT, produceToNewTopic, readTopic, T0, traffic } from './helpers.js';

/**
 * The rule lifecycle on the live service, real Kafka and ClickHouse: a burst gets a rule for its
 * ASN×JA4 pair after the hysteresis, renewed while it lasts and deleted by a tombstone once its
 * entity has been calm; a burst from an allowlisted ASN (from `rules.allow_file`) never gets one;
 * running the same input again leaves no duplicate row in FINAL queries.
 */
describe('rule lifecycle on real Kafka and ClickHouse', () => {
  const id = randomBytes(4).toString('hex');
  const topic = `it-rl-logs-${id}`;
  const rulesTopic = `it-rl-rules-${id}`;
  const database = `bw_it_rl_${id}`;
  const kafka = new Kafka({ clientId: 'it', brokers: localEndpoints.kafkaBrokers, logLevel: 1 });
  // DROP DATABASE of a database the service just wrote takes 30-40 s on 18.16.
  const ch = createClient({ url: localEndpoints.clickhouseUrl, request_timeout: 120_000 });
  const dir = mkdtempSync(join(tmpdir(), 'bw-it-rules-'));
  const allowFile = join(dir, 'allow.txt');
  const logs: RequestLog[] = traffic();
  // The same burst from ASN 3320, which the allowlist file names.
  for (let s = 0; s < 60; s++) {
    for (let k = 0; k < 40; k++) {
      const t = BURST_START + s * 1000 + k * 20 + 7;
      logs.push({
        timestamp: t, request_id: `allowed-${s}-${k}`, client_ip: `198.18.0.${(k * 3 + s) % 200}`, asn: 3320, country: 'DE', ja4: JA4_BOT, user_agent: 'python-requests/2.31',
        method: 'POST', host: 'shop.example', path: '/login', status: 401, response_bytes: 200, protocol: 'HTTP/1.1', challenge: 'NONE',
      });
    }
  }
  // Two calm minutes after the burst's last window (the baseline of minutes 2-4 again), for the rule to be let go.
  for (const r of logs.filter((l) => l.timestamp >= T0 + 120_000 && l.timestamp < T0 + 240_000)) {
    logs.push({ ...r, timestamp: r.timestamp + 360_000, request_id: `calm-${r.request_id}` });
  }
  logs.sort((a, b) => a.timestamp - b.timestamp);
  const counts: Record<string, number>[] = [];
  const inserted: Record<string, number>[] = [];
  let first: Service;
  /** Messages both runs published to the rule topic. */
  let published = 0;

  const configFor = (group: string): Config =>
    parseConfig({
      kafka: { brokers: localEndpoints.kafkaBrokers },
      input: { topic, group_id: group },
      dead_letter: { topic: `it-rl-dlq-${id}` },
      edge_rules: { topic: rulesTopic },
      clickhouse: { url: localEndpoints.clickhouseUrl, database },
      windows: { idle_partition_ms: 2_000, idle_flush_ms: 2_000 },
      scorer: { robust_deviation: { history: 30, warmup: 12, noise_floor: 'poisson' } },
      metrics: { port: 0 },
      // A calm minute after the burst ends is enough to see the tombstone; this world has five
      // entities, so the blast radius is loosened (its own tests: rules/lifecycle.test.ts).
      rules: { allow_file: allowFile, remove_after_calm_windows: 3, blast_radius: { max_share: 0.1 } },
    });
  const runOnce = async (group: string): Promise<Service> => {
    const service = await startService(configFor(group));
    const until = Date.now() + 120_000;
    while (Date.now() < until && !(await service.settled(logs.length))) await new Promise((r) => setTimeout(r, 250));
    await service.stop();
    return service;
  };
  const TABLES = ['verdicts', 'window_aggregates', 'rule_events'] as const;
  const finalCounts = async (): Promise<Record<string, number>> => {
    const out: Record<string, number> = {};
    for (const table of TABLES) {
      const rs = await ch.query({ query: `SELECT count() AS n FROM ${database}.${table} FINAL`, format: 'JSONEachRow' });
      out[table] = Number(((await rs.json()) as { n: string }[])[0]?.n);
    }
    return out;
  };

  beforeAll(async () => {
    writeFileSync(allowFile, '# allowlisted networks\nasn:3320\n');
    await produceToNewTopic(kafka, topic, logs.map((log) => ({ key: log.client_ip, value: encodeSingleObject(requestLogType, log) })));
    first = await runOnce(`it-rl-${id}`);
    counts.push(await finalCounts());
    inserted.push({ ...first.clickhouse.stats.inserted });
    // The same input again, from the beginning, in another consumer group: a replay.
    const again = await runOnce(`it-rl-again-${id}`);
    counts.push(await finalCounts());
    inserted.push({ ...again.clickhouse.stats.inserted });
    published = first.edgeRules.published + again.edgeRules.published;
  }, 300_000);

  afterAll(async () => {
    await ch.command({ query: `DROP DATABASE IF EXISTS ${database}` }).catch(() => undefined);
    await ch.close();
    rmSync(dir, { recursive: true, force: true });
    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [topic, rulesTopic, `it-rl-dlq-${id}`] }).catch(() => undefined);
    await admin.disconnect();
  });

  it('creates the pair rule after the hysteresis, renews it, and deletes it by a tombstone once calm', async () => {
    const ruleId = `asn_ja4:64512|${JA4_BOT}`;
    const all = await readTopic(kafka, rulesTopic, published);
    expect(all).toHaveLength(published);
    const messages = all.filter((m) => m.key === ruleId);
    const upserts = messages.filter((m) => m.value !== null).map((m) => edgeRuleFromAvro(edgeRuleType.fromBuffer((m.value as Buffer).subarray(10)) as Record<string, unknown>));
    // The second run published the same versions again; each counts once.
    const versions = [...new Map(upserts.map((r) => [r.updated_at, r])).values()];
    expect(upserts).toHaveLength(2 * versions.length);
    expect(versions.length).toBeGreaterThan(2);
    const created = versions[0] as EdgeRule;
    // Two anomalous windows before it exists: created no earlier than the second window ending in the burst.
    expect(created.created_at).toBeGreaterThanOrEqual(BURST_START + 20_000);
    expect(created).toMatchObject({ match: { asn: 64512, ja4: JA4_BOT }, action: 'challenge', mode: 'enforce' });
    // Renewed: each version later, its expiry pushed out.
    for (let i = 1; i < versions.length; i++) {
      expect((versions[i] as EdgeRule).updated_at).toBeGreaterThan((versions[i - 1] as EdgeRule).updated_at);
      expect((versions[i] as EdgeRule).expires_at).toBeGreaterThan((versions[i - 1] as EdgeRule).expires_at);
    }
    // Then deleted: the last message of its key (by the second run too) is a tombstone.
    expect(messages.at(-1)?.value).toBeNull();
    const rs = await ch.query({
      query: `SELECT op, why, toUnixTimestamp(event_time) * 1000 AS at FROM ${database}.rule_events FINAL WHERE rule_id = '${ruleId}' ORDER BY event_time, op`,
      format: 'JSONEachRow',
    });
    const events = (await rs.json()) as { op: string; why: string; at: string }[];
    expect(events.filter((e) => e.op === 'upsert')).toHaveLength(versions.length);
    const deletes = events.filter((e) => e.op === 'delete');
    expect(deletes).toEqual([{ op: 'delete', why: 'calm', at: String((versions.at(-1) as EdgeRule).updated_at + 30_000) }]);
  });

  it('never makes a rule for the allowlisted ASN, whose burst was flagged', async () => {
    const rs = await ch.query({ query: `SELECT count() AS n FROM ${database}.verdicts FINAL WHERE anomalous = 1 AND entity LIKE '3320%'`, format: 'JSONEachRow' });
    expect(Number(((await rs.json()) as { n: string }[])[0]?.n)).toBeGreaterThan(0);
    const messages = await readTopic(kafka, rulesTopic, published);
    expect(messages.filter((m) => m.key?.includes('3320'))).toEqual([]);
    expect(first.stats.rules.upserts).toBeGreaterThan(0);
  });

  it('running the same input twice leaves no duplicate row in FINAL queries', () => {
    const [once, twice] = counts as [Record<string, number>, Record<string, number>];
    for (const table of TABLES) {
      expect(once[table], table).toBeGreaterThan(0);
      // The second run wrote every row again; FINAL shows each once.
      expect(inserted[1]?.[table], table).toBe(inserted[0]?.[table]);
      expect(twice[table], table).toBe(once[table]);
    }
  });
});
