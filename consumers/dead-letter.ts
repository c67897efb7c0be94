import type { IHeaders, Kafka, Producer } from 'kafkajs';
import { z } from 'zod';
import { sendAcked, topicProducer } from './kafka-client.js';

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
  private producer: Producer | null = null;
  private pending: DeadLetter[] = [];
  /** Dead letters written, by reason (a metric). */
  readonly counts = new Map<string, number>();

  constructor(
    private readonly kafka: Kafka,
    readonly settings: DeadLetterSettings,
  ) {}

  async connect(): Promise<void> {
    this.producer = await topicProducer(this.kafka, {
      topic: this.settings.topic,
      partitions: this.settings.partitions,
      replicationFactor: this.settings.replication_factor,
      configs: { 'cleanup.policy': 'delete', 'retention.ms': String(this.settings.retention_ms) },
    });
  }

  /** Queues a dead letter; it is sent by {@link flush}. */
  add(letter: DeadLetter): void {
    this.pending.push(letter);
    this.counts.set(letter.reason, (this.counts.get(letter.reason) ?? 0) + 1);
  }

  /** Sends everything queued and waits for the brokers to acknowledge it. */
  async flush(): Promise<void> {
    if (this.pending.length === 0 || !this.producer) return;
    const messages = this.pending.map((d) => ({
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
    }));
    await sendAcked(this.producer, this.settings.topic, messages);
    this.pending = [];
  }

  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      await this.producer?.disconnect();
      this.producer = null;
    }
  }
}
