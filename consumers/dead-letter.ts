import type { IHeaders, Kafka } from 'kafkajs';
import { z } from 'zod';
import { TopicWriter } from './kafka-client.js';

/** Dead-letter topic settings. */
export const deadLetterConfigSchema = z
  .object({
    /** Topic for messages that cannot be decoded. Default `burstwatch-dlq`. */
    topic: z.string().min(1).default('burstwatch-dlq'),
    /** Partitions when created. Default 1. */
    partitions: z.number().int().positive().default(1),
    /** Replication factor when created. Default 1. */
    replication_factor: z.number().int().positive().default(1),
    /** Retention, ms. Default 7 days. */
    retention_ms: z.number().int().positive().default(7 * 86_400_000),
  })
  .strict();

/** Validated dead-letter settings. */
export type DeadLetterSettings = z.infer<typeof deadLetterConfigSchema>;

/** A message that could not be decoded, with where it came from and why. */
export interface DeadLetter {
  topic: string;
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: IHeaders | undefined;
  timestamp: string;
  reason: string;
  message: string;
}

/** Header names this sink adds; the original headers are kept as they were. */
export const DLQ_HEADERS = {
  reason: 'burstwatch.dlq.reason',
  message: 'burstwatch.dlq.message',
  topic: 'burstwatch.dlq.source.topic',
  partition: 'burstwatch.dlq.source.partition',
  offset: 'burstwatch.dlq.source.offset',
  timestamp: 'burstwatch.dlq.source.timestamp',
} as const;

/**
 * Writes undecodable messages to the dead-letter topic with their original bytes, key and
 * headers, plus the source topic/partition/offset and the reason (Kafka Connect's convention).
 * `flush` must resolve before the source offsets are committed.
 */
export class DeadLetterSink {
  /** The underlying writer (metrics). */
  readonly writer: TopicWriter;
  /** Dead letters written, by reason (a metric). */
  readonly counts = new Map<string, number>();

  constructor(
    kafka: Kafka,
    readonly settings: DeadLetterSettings,
  ) {
    this.writer = new TopicWriter(kafka, {
      topic: settings.topic,
      partitions: settings.partitions,
      replicationFactor: settings.replication_factor,
      configs: { 'cleanup.policy': 'delete', 'retention.ms': String(settings.retention_ms) },
    });
  }

  connect(): Promise<void> {
    return this.writer.connect();
  }

  /** Queues a dead letter; it is sent by {@link flush}. */
  add(d: DeadLetter): void {
    this.writer.enqueue({
      key: d.key,
      value: d.value,
      headers: {
        ...(d.headers ?? {}),
        [DLQ_HEADERS.reason]: d.reason,
        [DLQ_HEADERS.message]: d.message.slice(0, 1000),
        [DLQ_HEADERS.topic]: d.topic,
        [DLQ_HEADERS.partition]: String(d.partition),
        [DLQ_HEADERS.offset]: d.offset,
        [DLQ_HEADERS.timestamp]: d.timestamp,
      },
    });
    this.counts.set(d.reason, (this.counts.get(d.reason) ?? 0) + 1);
  }

  /** Sends everything queued and waits for the brokers to acknowledge it. */
  flush(): Promise<void> {
    return this.writer.flush();
  }

  close(): Promise<void> {
    return this.writer.close();
  }
}
