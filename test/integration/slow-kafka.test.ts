import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from '@clickhouse/client';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { startService } from '../../cli/service.js';
import { parseConfig } from '../../config.js';
import { localEndpoints } from '../../infra/index.js';
import { encodeSingleObject } from '../../schemas/codec.js';
import { requestLogType } from '../../schemas/index.js';
import { aggregatesInClickHouse, delayingProxy, expectExactAggregates, JA4_BOT, produceToNewTopic, readTopic, traffic, type DelayingProxy } from './helpers.js';
import { startPrivateKafka, type PrivateKafka } from './private-kafka.js';

/**
 * A slow and then unresponsive Kafka broker. The service needs a broker of its own here: the
 * shared one advertises its own address, so clients would reconnect around a proxy. This one
 * advertises the proxy, which holds every reply chunk from the broker (each socket's in order),
 * and for a while holds them all (a broker that stops answering, shorter than the request and
 * session timeouts).
 */
describe('Kafka slow, then unresponsive for 8 s', () => {
  const id = randomBytes(4).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'burstwatch-slow-kafka-'));
  const ch = createClient({ url: localEndpoints.clickhouseUrl, request_timeout: 120_000 });
  let target = 0;
  let holdMs = 0;
  let stalledUntil = 0;
  let proxy: DelayingProxy | null = null;
  let kafkaBroker: PrivateKafka | null = null;

  afterAll(async () => {
    await kafkaBroker?.stop();
    await proxy?.close();
    await ch.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the pipeline waits on it and loses nothing: exactly the brute-force aggregates, and the burst flagged', async () => {
    proxy = await delayingProxy(() => target, () => Math.max(holdMs, stalledUntil - Date.now()));
    kafkaBroker = await startPrivateKafka({ dir, advertisedPort: proxy.port, onListener: (p) => (target = p) });
    const kafka = new Kafka({ clientId: 'it-slow', brokers: kafkaBroker.brokers, logLevel: logLevel.NOTHING });
    const logs = traffic();
    const topic = `it-slow-${id}`;
    await produceToNewTopic(kafka, topic, logs.map((l) => ({ key: l.client_ip, value: encodeSingleObject(requestLogType, l) })));
    const c = parseConfig({
      kafka: { brokers: kafkaBroker.brokers },
      input: { topic, group_id: `it-slow-${id}` },
      dead_letter: { topic: `it-slow-dlq-${id}` },
      edge_rules: { topic: `it-slow-rules-${id}` },
      clickhouse: { url: localEndpoints.clickhouseUrl, database: `bw_it_slow_kafka_${id}` },
      windows: { idle_partition_ms: 2_000, idle_flush_ms: 2_000 },
      topology: { repartition_partitions: 4 },
      scorer: { robust_deviation: { history: 30, warmup: 12 } },
      metrics: { port: 0 },
    });
    // Every reply 100 ms late from the start: joins, fetches, produce, transactions.
    holdMs = 100;
    const s = await startService(c);
    let readAtStall = -1;
    try {
      // Mid-stream, the broker stops answering for 8 s.
      const until = Date.now() + 120_000;
      while (s.stats.panes.messages < logs.length / 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      readAtStall = s.stats.panes.messages;
      stalledUntil = Date.now() + 8_000;
      const settleBy = Date.now() + 240_000;
      let since: number | null = null;
      while (Date.now() < settleBy) {
        if (s.fatal()) throw s.fatal() as Error;
        if (!(await s.settled(logs.length))) since = null;
        else if (since === null) since = Date.now();
        else if (Date.now() - since >= 3_000) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(since, `not settled: ${JSON.stringify(s.stats.panes)}`).not.toBeNull();
    } finally {
      await s.stop();
    }
    expect(readAtStall).toBeGreaterThan(0);
    expect(readAtStall).toBeLessThan(logs.length);
    expect(proxy.held()).toBeGreaterThan(100);
    // Nothing dropped, nothing counted twice.
    expectExactAggregates(await aggregatesInClickHouse(ch, c.clickhouse.database), logs, expect);
    const rs = await ch.query({ query: `SELECT entity FROM ${c.clickhouse.database}.verdicts FINAL WHERE anomalous = 1 AND entity_type = 'asn_ja4'`, format: 'JSONEachRow' });
    expect(((await rs.json()) as { entity: string }[]).map((r) => r.entity)).toContain(`64512|${JA4_BOT}`);
    // And the edge nodes got the rule.
    const rules = await readTopic(kafka, c.edge_rules.topic, 1);
    expect(rules.length).toBeGreaterThan(0);
  }, 420_000);
});
