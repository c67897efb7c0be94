import { randomBytes } from 'node:crypto';
import { createClient } from '@clickhouse/client';
import { Kafka } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { startService } from '../../cli/service.js';
import { parseConfig } from '../../config.js';
import { parseCommitMetadata } from '../../consumers/kafka-source.js';
import { localEndpoints } from '../../infra/index.js';
import { encodeSingleObject } from '../../schemas/codec.js';
import { requestLogType } from '../../schemas/index.js';
import { aggregatesInClickHouse, expectExactAggregates, traffic } from './helpers.js';

/**
 * Stops the live service in the middle of the stream and starts it again. Offsets were
 * committed at the oldest record an open window still needed, with the emitted-window horizon
 * in the metadata, so the second run must rebuild the open windows exactly and not emit the
 * closed ones again: the final aggregates equal brute force, with nothing lost or counted twice.
 */
describe('restart mid-stream on real Kafka and ClickHouse', () => {
  const id = randomBytes(4).toString('hex');
  const topic = `it-restart-${id}`;
  const database = `bw_it_restart_${id}`;
  const kafka = new Kafka({ clientId: 'it', brokers: localEndpoints.kafkaBrokers, logLevel: 1 });
  const ch = createClient({ url: localEndpoints.clickhouseUrl });
  const logs = traffic();
  const config = parseConfig({
    kafka: { brokers: localEndpoints.kafkaBrokers },
    input: { topic, group_id: `it-restart-${id}`, max_bytes_per_partition: 16_384 },
    dead_letter: { topic: `it-restart-dlq-${id}` },
    edge_rules: { topic: `it-restart-rules-${id}` },
    clickhouse: { url: localEndpoints.clickhouseUrl, database },
    windows: { idle_partition_ms: 2_000, idle_flush_ms: 2_000 },
    scorer: { robust_deviation: { history: 30, warmup: 12 } },
    metrics: { port: 0 },
  });

  afterAll(async () => {
    await ch.command({ query: `DROP DATABASE IF EXISTS ${database}` }).catch(() => undefined);
    await ch.close();
    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [topic, config.dead_letter.topic, config.edge_rules.topic] }).catch(() => undefined);
    await admin.disconnect();
  });

  it('gives exactly the aggregates of an uninterrupted run', async () => {
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 3, replicationFactor: 1 }] });
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const messages = logs.map((log) => ({ key: log.client_ip, value: encodeSingleObject(requestLogType, log) }));
    for (let i = 0; i < messages.length; i += 1000) await producer.send({ topic, acks: -1, messages: messages.slice(i, i + 1000) });
    await producer.disconnect();

    // First run: stop once a few windows have been emitted, with most of the stream still
    // unread (small fetches make batches small).
    const first = await startService(config);
    const deadline = Date.now() + 60_000;
    while (first.pipeline.windows.stats.windowsClosed < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await first.stop();
    const consumedFirst = first.source.stats.messages;
    const windowsFirst = first.pipeline.windows.stats.windowsClosed;
    expect(consumedFirst).toBeLessThan(messages.length);
    expect(windowsFirst).toBeGreaterThan(0);
    const committed = await admin.fetchOffsets({ groupId: config.input.group_id, topics: [topic] });
    const horizon = Math.max(...(committed[0]?.partitions ?? []).map((p) => parseCommitMetadata(p.metadata)?.horizon ?? -1));
    expect(horizon).toBeGreaterThan(0);

    // Second run: resumes from the committed offsets and the stored horizon, to the end.
    const second = await startService(config);
    const until = Date.now() + 120_000;
    while (Date.now() < until) {
      const w = second.pipeline.windows;
      if (second.source.committedOffsets.size === 3 && w.openPanes === 0 && !w.hasReady() && second.source.stats.messages > 0) {
        const ends = await admin.fetchTopicOffsets(topic);
        if (ends.every((e) => second.source.committedOffsets.get(e.partition) === Number(e.high))) break;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    await second.stop();
    await admin.disconnect();
    // The windows open at the stop were rebuilt from records read a second time…
    expect(consumedFirst + second.source.stats.messages).toBeGreaterThan(messages.length);
    // …and the windows closed before it were not emitted again (the horizon held).
    expect(second.pipeline.windows.stats.late).toBe(0);
    const firstEmittedBefore = horizon;
    expect(second.pipeline.windows.horizon).toBeGreaterThan(firstEmittedBefore);
    expectExactAggregates(await aggregatesInClickHouse(ch, database), logs, expect);
  });
});
