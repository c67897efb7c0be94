import { randomBytes } from 'node:crypto';
import { Kafka } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startService, type Service } from '../../cli/service.js';
import { parseConfig } from '../../config.js';
import { DLQ_HEADERS } from '../../consumers/dead-letter.js';
import { localEndpoints } from '../../infra/index.js';
import { encodeConfluent, encodeSingleObject } from '../../schemas/codec.js';
import { edgeRuleType, requestLogType, type RequestLog } from '../../schemas/index.js';
import { readTopic, traffic } from './helpers.js';
import { createClient } from '@clickhouse/client';
import avro from 'avsc';
import { SchemaRegistryClient } from '../../schemas/registry.js';

/**
 * A corpus of hostile messages mixed into ordinary traffic, through the live service on the real
 * Kafka and ClickHouse: every bad record reaches the dead-letter topic with its reason, the
 * counters agree, the process does not crash, and the watermark is not wedged by a far-future
 * timestamp (the ordinary records after it are windowed as usual).
 */
describe('hostile input on the live service', () => {
  const id = randomBytes(4).toString('hex');
  const topic = `it-hostile-${id}`;
  const dlqTopic = `it-hostile-dlq-${id}`;
  const database = `bw_it_hostile_${id}`;
  const kafka = new Kafka({ clientId: 'it', brokers: localEndpoints.kafkaBrokers, logLevel: 1 });
  const logs = traffic().slice(0, 20_000);
  const sample = logs[100] as RequestLog;
  /** A record from where the corpus goes in, so that valid odd records are on time, not late. */
  const mid = logs[(logs.length >> 1) - 1] as RequestLog;
  const sqlJa4 = "t13d'); DROP TABLE verdicts; --\\\"\u00e9";
  const big = 10 * 1024 * 1024;
  /** The corpus: each message with the dead-letter reason it must get (null: a valid record, however odd). */
  const corpus: { name: string; key: Buffer | string | null; value: Buffer | null; headers?: Record<string, Buffer | string>; reason: string | null }[] = [
    { name: 'truncated Avro', key: 'k1', value: encodeSingleObject(requestLogType, sample).subarray(0, 20), reason: 'truncated' },
    { name: 'wrong magic byte', key: 'k2', value: Buffer.concat([Buffer.from([0x07]), encodeSingleObject(requestLogType, sample).subarray(1)]), reason: 'bad_magic' },
    { name: 'unknown schema id', key: 'k3', value: encodeConfluent(2_000_000_001, requestLogType, sample), reason: 'unknown_schema_id' },
    { name: 'wrong schema (an edge rule)', key: 'k4', value: encodeSingleObject(edgeRuleType, { rule_id: 'x', match: { asn: 1, ja4: null, country: null, host: null, client_ip: null, user_agent: null }, action: 'block', mode: 'enforce', created_at: 1, updated_at: 1, expires_at: 2, score: 1, reason: 'r', rate_limit_rps: null, verdict_id: null, entity_type: null, entity: null }), reason: 'unknown_fingerprint' },
    { name: '10 MB of garbage', key: 'k5', value: Buffer.alloc(big, 0x41), reason: 'bad_magic' },
    { name: 'a 10 MB user agent', key: 'k6', value: encodeSingleObject(requestLogType, { ...sample, request_id: 'huge-ua', user_agent: 'A'.repeat(big) }), reason: null },
    { name: 'negative timestamp', key: 'k7', value: encodeSingleObject(requestLogType, { ...sample, request_id: 'neg', timestamp: -5 }), reason: 'invalid_value' },
    { name: 'far-future timestamp', key: 'k8', value: encodeSingleObject(requestLogType, { ...sample, request_id: 'future', timestamp: 8_000_000_000_000 }), reason: 'future_timestamp' },
    { name: 'invalid IP', key: 'k9', value: encodeSingleObject(requestLogType, { ...sample, request_id: 'ip', client_ip: '999.1.1.1' }), reason: 'invalid_value' },
    { name: 'binary key and odd headers', key: randomBytes(300), value: encodeSingleObject(requestLogType, { ...sample, request_id: 'odd-headers' }), headers: { '': Buffer.alloc(0), 'x\u0000bin': randomBytes(64), ['h'.repeat(2000)]: 'v' }, reason: null },
    { name: 'null key, null value', key: null, value: null, reason: 'empty' },
    // Avro has no NaN long: a NaN timestamp can only come from a writer schema that made it a double, which does not resolve to ours.
    { name: 'a NaN timestamp (written as a double)', key: 'k14', value: null, reason: 'incompatible_schema' },
    { name: 'a 10 MB path', key: 'k11', value: encodeSingleObject(requestLogType, { ...mid, request_id: 'huge-path', path: `/${'p'.repeat(big)}` }), reason: null },
    { name: 'a 300-character JA4', key: 'k12', value: encodeSingleObject(requestLogType, { ...mid, request_id: 'long-ja4', ja4: 'j'.repeat(300) }), reason: 'invalid_value' },
    { name: 'SQL and quotes in a JA4', key: 'k13', value: encodeSingleObject(requestLogType, { ...mid, request_id: 'sql-ja4', ja4: sqlJa4 }), reason: null },
  ];
  let service: Service;
  const ch = createClient({ url: localEndpoints.clickhouseUrl, request_timeout: 120_000 });
  let settledAtStop = false;

  beforeAll(async () => {
    const registry = new SchemaRegistryClient({ url: localEndpoints.schemaRegistryUrl });
    const doubleTime = avro.Type.forSchema({
      ...(JSON.parse(JSON.stringify(requestLogType.schema())) as { fields: { name: string; type: unknown }[] }),
      fields: (requestLogType.schema() as { fields: { name: string; type: unknown }[] }).fields.map((f) => (f.name === 'timestamp' ? { ...f, type: 'double' } : f)),
    } as avro.Schema);
    const nan = corpus.find((c) => c.key === 'k14') as { value: Buffer | null };
    nan.value = encodeConfluent(await registry.register(`${topic}-nan-value`, doubleTime), doubleTime, { ...sample, request_id: 'nan', timestamp: Number.NaN });
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({
      waitForLeaders: true,
      topics: [
        { topic, numPartitions: 3, replicationFactor: 1, configEntries: [{ name: 'max.message.bytes', value: String(24 * 1024 * 1024) }] },
        // Made by an operator with a 2 MB limit: a 10 MB dead letter cannot fit whole.
        { topic: dlqTopic, numPartitions: 1, replicationFactor: 1, configEntries: [{ name: 'max.message.bytes', value: String(2 * 1024 * 1024) }] },
      ],
    });
    await admin.disconnect();
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const ordinary = logs.map((log) => ({ key: log.client_ip, value: encodeSingleObject(requestLogType, log) }));
    // Half the ordinary traffic, the corpus (one message per request: some are 10 MB), then the rest.
    const half = ordinary.length >> 1;
    await producer.send({ topic, acks: -1, messages: ordinary.slice(0, half) });
    for (const c of corpus) await producer.send({ topic, acks: -1, messages: [{ key: c.key, value: c.value, ...(c.headers ? { headers: c.headers } : {}) }] });
    await producer.send({ topic, acks: -1, messages: ordinary.slice(half) });
    await producer.disconnect();
    service = await startService(
      parseConfig({
        kafka: { brokers: localEndpoints.kafkaBrokers },
        // Without plain Avro (which has no magic byte, so anything could be one): a wrong magic byte is recognised as such.
        input: { topic, group_id: `it-hostile-${id}`, encodings: ['single_object', 'confluent'], schema_registry: { url: localEndpoints.schemaRegistryUrl } },
        dead_letter: { topic: dlqTopic },
        edge_rules: { topic: `it-hostile-rules-${id}` },
        clickhouse: { url: localEndpoints.clickhouseUrl, database },
        windows: { idle_partition_ms: 2_000, idle_flush_ms: 2_000 },
        metrics: { port: 0 },
      }),
    );
    const total = ordinary.length + corpus.length;
    // Every message read, then up to 30 s for the stages to settle (see the last test).
    const until = Date.now() + 120_000;
    while (Date.now() < until && service.stats.panes.messages < total && !service.fatal()) await new Promise((r) => setTimeout(r, 250));
    const settleBy = Date.now() + 30_000;
    while (Date.now() < settleBy && !(settledAtStop = await service.settled(total)) && !service.fatal()) await new Promise((r) => setTimeout(r, 250));
    await service.stop();
  }, 300_000);

  afterAll(async () => {
    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [topic, dlqTopic, `it-hostile-rules-${id}`] }).catch(() => undefined);
    await admin.disconnect();
    await ch.command({ query: `DROP DATABASE IF EXISTS ${database}` }).catch(() => undefined);
    await ch.close();
  });

  it('did not fail, read every message, and the counters add up', () => {
    expect(service.fatal()).toBeNull();
    expect(service.stats.panes.messages).toBe(logs.length + corpus.length);
    expect(service.stats.panes.decoded + service.stats.panes.deadLettered).toBe(service.stats.panes.messages);
  });

  it('put every bad record on the dead-letter topic with its reason, and nothing else', async () => {
    const letters = await readTopic(kafka, dlqTopic, service.stats.panes.deadLettered, 60_000);
    expect(letters).toHaveLength(service.stats.panes.deadLettered);
    const reasons = letters.map((l) => l.headers[DLQ_HEADERS.reason]?.toString()).sort();
    const expected = corpus.filter((c) => c.reason !== null).map((c) => c.reason as string);
    expect(reasons, JSON.stringify(reasons)).toEqual(expected.sort());
    // With their bytes; the 10 MB one cut to fit the topic's 2 MB, saying so and where the whole is.
    const cut = letters.filter((l) => l.headers[DLQ_HEADERS.truncated] !== undefined);
    expect(cut).toHaveLength(1);
    expect(cut[0]?.headers[DLQ_HEADERS.truncated]?.toString()).toBe(String(big));
    expect(cut[0]?.headers[DLQ_HEADERS.reason]?.toString()).toBe('bad_magic');
    expect(cut[0]?.headers[DLQ_HEADERS.topic]?.toString()).toBe(topic);
    expect(cut[0]?.value?.equals(Buffer.alloc(cut[0]?.value?.length ?? 0, 0x41))).toBe(true);
    expect(cut[0]?.value?.length).toBeGreaterThan(1024 * 1024);
    expect(service.deadLetter.truncated).toBe(1);
  });

  it('wrote log values to ClickHouse as data, never as SQL: quotes and a DROP TABLE arrive verbatim', async () => {
    const rows = (await (
      await ch.query({ query: `SELECT DISTINCT entity FROM ${database}.window_aggregates WHERE entity_type = 'ja4'`, format: 'JSONEachRow' })
    ).json()) as { entity: string }[];
    expect(rows.map((r) => r.entity)).toContain(sqlJa4);
    const tables = (await (await ch.query({ query: `SHOW TABLES FROM ${database}`, format: 'JSONEachRow' })).json()) as { name: string }[];
    expect(tables.map((t) => t.name)).toContain('verdicts');
  });

  it('kept a 10 MB path as a cut top path, so no message or row carries it whole', async () => {
    const rows = (await (
      await ch.query({ query: `SELECT max(length(arrayStringConcat(top_paths, ''))) AS n FROM ${database}.window_aggregates`, format: 'JSONEachRow' })
    ).json()) as { n: string | number }[];
    expect(Number(rows[0]?.n)).toBeLessThan(64 * 1024);
  });

  it('windowed the ordinary records after the far-future one: the watermark was not wedged', () => {
    // The stream runs 8 minutes of event time: stage 2 closed windows through it.
    expect(service.stats.windows.windowsClosed).toBeGreaterThan(20);
  });

  // This corpus once found a stall: one stage-2 partition held no entity in the last windows,
  // so its idle flush stopped 50 s short of the others and the rules stage waited for it for ever.
  it('lets every stage-2 partition close its windows, and the rules stage decide them, afterwards', async () => {
    const nexts = new Set(service.windowTasks().map((t) => t.assembler.nextWindowStart));
    expect(nexts.size, JSON.stringify([...nexts])).toBe(1);
    expect(service.ruleTask()?.pendingWindows).toBe(0);
    expect(settledAtStop).toBe(true);
  });
});
