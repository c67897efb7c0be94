import type { EachBatchPayload, Kafka, KafkaMessage } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config.js';
import { Pipeline } from '../pipeline.js';
import { encodePlain, RequestLogDecoder } from '../schemas/codec.js';
import { requestLogType, type RequestLog } from '../schemas/index.js';
import type { PipelineSink } from '../sinks/sink.js';
import type { WindowAggregateRow } from './aggregates.js';
import type { DeadLetter, DeadLetterSink } from './dead-letter.js';
import { KafkaSource, parseCommitMetadata } from './kafka-source.js';

const T0 = 1_793_491_200_000;
function log(i: number): RequestLog {
  return {
    timestamp: T0 + i * 1000, request_id: `r${i}`, client_ip: `10.0.0.${i % 5}`, asn: 64512, country: 'XX', ja4: 'j',
    user_agent: 'ua', method: 'GET', host: 'h', path: '/', status: 200, response_bytes: 1, protocol: 'HTTP/2', challenge: 'NONE',
  };
}

function payload(offsets: number[], values: (i: number) => Buffer | null = (i) => encodePlain(requestLogType, log(i))): EachBatchPayload {
  const messages = offsets.map((o) => ({ offset: String(o), key: null, value: values(o), headers: {}, timestamp: '0', attributes: 0 }) as unknown as KafkaMessage);
  return {
    batch: { topic: 'in', partition: 0, highWatermark: String(offsets.at(-1)! + 1), messages, lastOffset: () => String(offsets.at(-1)) },
    heartbeat: async () => undefined,
    isStale: () => false,
    isRunning: () => true,
    resolveOffset: () => undefined,
  } as unknown as EachBatchPayload;
}

function setup(nowMs = T0 + 3_600_000) {
  const rows: WindowAggregateRow[] = [];
  const sink: PipelineSink = { name: 'memory', connect: async () => undefined, flush: async () => undefined, close: async () => undefined, writeAggregates: async (r) => void rows.push(...r) };
  const pipeline = new Pipeline(parseConfig({}), [sink]);
  const letters: DeadLetter[] = [];
  const dlq = { add: (d: DeadLetter) => letters.push(d), flush: async () => undefined } as unknown as DeadLetterSink;
  const source = new KafkaSource({} as Kafka, parseConfig({}), new RequestLogDecoder(), dlq, pipeline, () => nowMs);
  const handle = (p: EachBatchPayload) => (source as unknown as { handleBatch(p: EachBatchPayload): Promise<void> }).handleBatch(p);
  return { rows, pipeline, letters, source, handle };
}

describe('KafkaSource batch handling', () => {
  it('takes each record once when kafkajs delivers a batch again after a restart or rebalance', async () => {
    const { rows, pipeline, source, handle } = setup();
    await handle(payload([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
    // Redelivery from an older committed offset, overlapping what the windows already hold.
    await handle(payload([3, 4, 5, 6, 7, 8, 9, 10, 11]));
    await pipeline.finish();
    expect(source.stats).toMatchObject({ messages: 12, decoded: 12, redelivered: 7 });
    const total = rows.filter((r) => r.entity_type === 'asn' && r.window_start === T0).reduce((a, r) => a + r.requests, 0);
    expect(total).toBe(12); // window [T0, T0+60 s) holds records 0..11 once each
  });

  it('dead-letters undecodable messages with their source, once', async () => {
    const { letters, source, handle } = setup();
    const bad = (i: number) => (i === 2 ? Buffer.from([1, 2, 3]) : encodePlain(requestLogType, log(i)));
    await handle(payload([0, 1, 2, 3], bad));
    await handle(payload([2, 3, 4], bad));
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({ topic: 'in', partition: 0, offset: '2' });
    expect(source.stats).toMatchObject({ deadLettered: 1, decoded: 4, redelivered: 2 });
  });

  it('dead-letters records from far in the future instead of letting them push the watermark', async () => {
    const { letters, pipeline, handle } = setup(T0 + 5_000);
    const future = (i: number) => encodePlain(requestLogType, i === 1 ? { ...log(1), timestamp: T0 + 86_400_000 } : log(i));
    await handle(payload([0, 1, 2], future));
    expect(letters.map((l) => l.reason)).toEqual(['future_timestamp']);
    expect(letters[0]?.message).toMatch(/ahead of this host's clock/);
    expect(pipeline.windows.watermark).toBe(T0 + 2_000);
  });

  it('reads only the commit metadata it wrote', () => {
    expect(parseCommitMetadata('{"v":1,"horizon":1793491200000}')).toEqual({ v: 1, horizon: 1_793_491_200_000 });
    for (const bad of [null, '', 'x', '{"v":2,"horizon":1}', '{"v":1,"horizon":"1"}', '{"v":1}']) expect(parseCommitMetadata(bad)).toBeNull();
  });
});
