import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient } from '@clickhouse/client';
import { Kafka } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startService, type Service } from '../../cli/service.js';
import { parseConfig } from '../../config.js';
import { DLQ_HEADERS } from '../../consumers/dead-letter.js';
import { parsePaneCheckpoint } from '../../consumers/pane-stage.js';
import { localEndpoints } from '../../infra/index.js';
import { encodeConfluent, encodePlain, encodeSingleObject } from '../../schemas/codec.js';
import { fingerprintBytes } from '../../schemas/fingerprint.js';
import { edgeRuleFromAvro, edgeRuleType, requestLogType, type RequestLog } from '../../schemas/index.js';
import { SchemaRegistryClient } from '../../schemas/registry.js';
import { aggregatesInClickHouse, expectExactAggregates, JA4_APP, JA4_BOT, produceToNewTopic, readTopic, T0, traffic } from './helpers.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

describe('backbone on real Kafka, ClickHouse and schema registry', () => {
  const id = randomBytes(4).toString('hex');
  const topic = `it-logs-${id}`;
  const group = `it-group-${id}`;
  const dlqTopic = `it-dlq-${id}`;
  const rulesTopic = `it-rules-${id}`;
  const database = `bw_it_${id}`;
  const kafka = new Kafka({ clientId: 'it', brokers: localEndpoints.kafkaBrokers, logLevel: 1 });
  const ch = createClient({ url: localEndpoints.clickhouseUrl });
  const logs = traffic();
  const garbage: { key: string; value: Buffer | null; reason: string }[] = [];
  let service: Service;
  let produced = 0;
  const metricsPort = 20_000 + Math.floor(Math.random() * 10_000);
  const scraped: { metrics: string; healthz: number; readyz: number } = { metrics: '', healthz: 0, readyz: 0 };

  beforeAll(async () => {
    const registry = new SchemaRegistryClient({ url: localEndpoints.schemaRegistryUrl });
    const schemaId = await registry.register(`${topic}-value`, requestLogType);
    const sample = logs[0] as RequestLog;
    const plain = encodePlain(requestLogType, sample);
    garbage.push(
      { key: 'g-empty', value: Buffer.alloc(0), reason: 'empty' },
      { key: 'g-null', value: null, reason: 'empty' },
      { key: 'g-truncated', value: plain.subarray(0, 12), reason: 'truncated' },
      { key: 'g-trailing', value: Buffer.concat([plain, Buffer.from([7, 7, 7])]), reason: 'trailing_bytes' },
      { key: 'g-unknown-id', value: encodeConfluent(987_654, requestLogType, sample), reason: 'unknown_schema_id' },
      { key: 'g-unknown-fp', value: Buffer.concat([Buffer.from([0xc3, 0x01]), randomBytes(8), plain]), reason: 'unknown_fingerprint' },
      { key: 'g-bad-ip', value: encodePlain(requestLogType, { ...sample, client_ip: 'not-an-ip' }), reason: 'invalid_value' },
    );
    const messages: { key: string; value: Buffer | null }[] = logs.map((log, i) => ({
      key: log.client_ip,
      value: i % 3 === 0 ? encodePlain(requestLogType, log) : i % 3 === 1 ? encodeSingleObject(requestLogType, log) : encodeConfluent(schemaId, requestLogType, log),
    }));
    // Garbage in the middle of the stream, where it must not disturb anything around it.
    messages.splice(1000, 0, ...garbage.map((g) => ({ key: g.key, value: g.value })));
    await produceToNewTopic(kafka, topic, messages);
    produced = messages.length;

    const config = parseConfig({
      kafka: { brokers: localEndpoints.kafkaBrokers },
      input: { topic, group_id: group, schema_registry: { url: localEndpoints.schemaRegistryUrl } },
      dead_letter: { topic: dlqTopic },
      edge_rules: { topic: rulesTopic },
      clickhouse: { url: localEndpoints.clickhouseUrl, database },
      windows: { idle_partition_ms: 2_000, idle_flush_ms: 2_000 },
      scorer: { robust_deviation: { history: 30, warmup: 12, noise_floor: 'poisson' } },
      metrics: { port: metricsPort },
      // Five entities make up this world, so any rule would match a few % of its traffic; the
      // blast-radius preview (its own test in test/integration/rules.test.ts) would shadow it.
      rules: { blast_radius: { max_share: 0.1 } },
    });
    service = await startService(config);
    const until = Date.now() + 120_000;
    while (Date.now() < until && !(await service.settled(produced))) await new Promise((r) => setTimeout(r, 250));
    const base = `http://127.0.0.1:${metricsPort}`;
    scraped.metrics = await (await fetch(`${base}/metrics`)).text();
    scraped.healthz = (await fetch(`${base}/healthz`)).status;
    scraped.readyz = (await fetch(`${base}/readyz`)).status;
    await service.stop();
  });

  afterAll(async () => {
    await ch.command({ query: `DROP DATABASE IF EXISTS ${database}` }).catch(() => undefined);
    await ch.close();
    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [topic, dlqTopic, rulesTopic] }).catch(() => undefined);
    await admin.disconnect();
  });

  it('consumed every message, decoding all three encodings', () => {
    expect(service.stats.panes.messages).toBe(produced);
    expect(service.stats.panes.decoded).toBe(logs.length);
    expect(service.stats.panes.late).toBe(0);
  });

  it('wrote exactly the brute-force window aggregates to ClickHouse', async () => {
    expectExactAggregates(await aggregatesInClickHouse(ch, database), logs, expect);
  });

  it('put every undecodable message on the dead-letter topic with its bytes, source and reason', async () => {
    const letters = await readTopic(kafka, dlqTopic, garbage.length);
    expect(letters).toHaveLength(garbage.length);
    for (const g of garbage) {
      const l = letters.find((x) => x.key === g.key);
      expect(l, g.key).toBeDefined();
      expect(l?.headers[DLQ_HEADERS.reason]?.toString()).toBe(g.reason);
      expect(l?.headers[DLQ_HEADERS.topic]?.toString()).toBe(topic);
      expect(Number(l?.headers[DLQ_HEADERS.offset]?.toString())).toBeGreaterThanOrEqual(0);
      if (g.value === null || g.value.length === 0) expect(l?.value?.length ?? 0).toBe(0);
      else expect(l?.value?.equals(g.value)).toBe(true);
    }
  });

  it('flagged the burst and published one rule for the ASN×JA4 pair on the compacted topic', async () => {
    const rs = await ch.query({
      query: `SELECT entity_type, entity, score, reasons FROM ${database}.verdicts FINAL WHERE anomalous = 1 ORDER BY window_start`,
      format: 'JSONEachRow',
    });
    const flagged = (await rs.json()) as { entity_type: string; entity: string; score: number; reasons: string[] }[];
    const pair = flagged.filter((v) => v.entity_type === 'asn_ja4' && v.entity === `64512|${JA4_BOT}`);
    expect(pair.length).toBeGreaterThan(0);
    expect(pair[0]?.reasons[0]).toMatch(/^requests \d+ in 60 s vs typical \d+(\.\d)? .*x typical/);
    // Steady entities are never flagged.
    expect(flagged.filter((v) => v.entity.includes('4200000001') || v.entity.includes(JA4_APP))).toEqual([]);

    const admin = kafka.admin();
    await admin.connect();
    const cfg = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2, name: rulesTopic, configNames: ['cleanup.policy'] }] });
    await admin.disconnect();
    expect(cfg.resources[0]?.configEntries[0]?.configValue).toBe('compact');

    const messages = await readTopic(kafka, rulesTopic, 1);
    const ruleId = `asn_ja4:64512|${JA4_BOT}`;
    const upserts = messages.filter((m) => m.key === ruleId && m.value !== null);
    expect(upserts.length).toBeGreaterThan(0);
    const value = upserts.at(-1)?.value as Buffer;
    expect(value.subarray(0, 2)).toEqual(Buffer.from([0xc3, 0x01]));
    expect(value.subarray(2, 10)).toEqual(fingerprintBytes(edgeRuleType));
    const rule = edgeRuleFromAvro(edgeRuleType.fromBuffer(value.subarray(10)) as Record<string, unknown>);
    expect(rule).toMatchObject({ rule_id: ruleId, match: { asn: 64512, ja4: JA4_BOT }, action: 'challenge', mode: 'enforce' });
    expect(rule.expires_at).toBeGreaterThan(rule.created_at);
    // The pair covers the burst: no rule for the whole ASN or the whole fingerprint.
    expect(messages.some((m) => m.key === 'asn:64512' || m.key === `ja4:${JA4_BOT}`)).toBe(false);
  });

  it('served Prometheus metrics that agree with what happened, and health endpoints', () => {
    expect(scraped.healthz).toBe(200);
    expect(scraped.readyz).toBe(200);
    const value = (line: string): number => Number(scraped.metrics.split('\n').find((l) => l.startsWith(line))?.split(' ').at(-1));
    expect(value('burstwatch_messages_total ')).toBe(produced);
    expect(value('burstwatch_records_decoded_total ')).toBe(logs.length);
    expect(value('burstwatch_decode_errors_total{reason="empty"}')).toBe(2);
    expect(value('burstwatch_decode_errors_total{reason="unknown_schema_id"}')).toBe(1);
    expect(value('burstwatch_windows_closed_total ')).toBe(service.stats.windows.windowsClosed);
    expect(value('burstwatch_transactions_total ')).toBeGreaterThan(0);
    expect(value('burstwatch_rules_active ')).toBeGreaterThan(0);
    // Every family the operator's dashboards need (docs/operations.md lists them), with data.
    expect(value('burstwatch_verdicts_total ')).toBe(service.stats.windows.verdicts);
    expect(value('burstwatch_dead_letters_truncated_total ')).toBe(0);
    expect(value('burstwatch_clickhouse_rows_total ')).toBeGreaterThan(0);
    expect(value('burstwatch_rule_messages_total ')).toBeGreaterThan(0);
    expect(value('burstwatch_late_records_total ')).toBe(0);
    expect(value('burstwatch_pane_evictions_total ')).toBe(0);
    expect(value('burstwatch_entity_evictions_total ')).toBe(0);
    expect(value('burstwatch_detector_seconds_count ')).toBe(service.stats.windows.windowsClosed);
    expect(value('burstwatch_sink_batch_seconds_count{sink="clickhouse",table="verdicts"}')).toBeGreaterThan(0);
    expect(value('burstwatch_sink_batch_seconds_count{sink="edge_rules"')).toBeGreaterThan(0);
    expect(value('burstwatch_sink_retries_total{sink="clickhouse"}')).toBe(0);
    expect(value('burstwatch_sink_healthy ')).toBe(1);
    expect(value('burstwatch_stage_retries_total{stage="windows"}')).toBe(0);
    // docs/operations.md lists exactly the metrics served (process metrics aside).
    const served = new Set([...scraped.metrics.matchAll(/^# TYPE (burstwatch_\w+) /gm)].map((m) => m[1] as string).filter((n) => !n.startsWith('burstwatch_process_')));
    const doc = readFileSync(join(root, 'docs', 'operations.md'), 'utf8');
    const documented = new Set([...doc.matchAll(/^\| `(burstwatch_\w+)/gm)].map((m) => m[1] as string));
    expect([...served].sort()).toEqual([...documented].sort());
    // Caught up when scraped: no lag on any stage's partitions (one series per partition owned).
    const lags = scraped.metrics.split('\n').filter((l) => l.startsWith('burstwatch_consumer_lag_messages{'));
    expect(lags.length).toBeGreaterThanOrEqual(3 + 6 + 1);
    expect(lags.every((l) => l.endsWith(' 0'))).toBe(true);
  });

  it('committed every input offset, with the sealed-pane bound in the metadata', async () => {
    const admin = kafka.admin();
    await admin.connect();
    const committed = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    const ends = await admin.fetchTopicOffsets(topic);
    await admin.disconnect();
    const parts = committed[0]?.partitions ?? [];
    expect(parts).toHaveLength(3);
    for (const p of parts) {
      expect(p.offset).toBe(ends.find((e) => e.partition === p.partition)?.high);
      expect(parsePaneCheckpoint(p.metadata)?.sealed).toBeGreaterThan(T0);
    }
  });
});
