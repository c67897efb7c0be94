import type { IHeaders, Kafka, Message } from 'kafkajs';
import { z } from 'zod';
import { ensureTopic, topicMaxMessageBytes } from './kafka-client.js';

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
    /**
     * The topic's max.message.bytes when created, bytes: room for the largest message the input
     * topic takes. Default 16 MiB. A dead letter that still does not fit (an older topic with a
     * smaller limit) is written with its value cut, and the header `burstwatch.dlq.truncated`
     * gives the original size; the source topic, partition and offset headers point to the whole.
     */
    max_message_bytes: z.number().int().positive().default(16 * 1024 * 1024),
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
  truncated: 'burstwatch.dlq.truncated',
} as const;

/** Room left in a dead letter for the key, headers and framing, bytes. */
const HEADROOM = 64 * 1024;

/**
 * Builds the dead-letter messages of undecodable records: their original bytes, key and
 * headers, plus the source topic/partition/offset and the reason (Kafka Connect's convention).
 * Stage 1 sends them in its own transaction, with the input offsets; this class creates the
 * topic and knows how large a message it takes.
 */
export class DeadLetterSink {
  /** Dead letters written, by reason (a metric). */
  readonly counts = new Map<string, number>();
  /** Dead letters whose value was cut to fit the topic (a metric). */
  truncated = 0;
  /** The topic's effective max.message.bytes, read at connect. */
  private maxMessageBytes: number | undefined;

  constructor(
    private readonly kafka: Kafka,
    readonly settings: DeadLetterSettings,
  ) {}

  /** Creates the topic if missing (with `max_message_bytes`) and reads the limit it has. */
  async connect(): Promise<void> {
    const s = this.settings;
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      await ensureTopic(admin, {
        topic: s.topic,
        partitions: s.partitions,
        replicationFactor: s.replication_factor,
        configs: { 'cleanup.policy': 'delete', 'retention.ms': String(s.retention_ms), 'max.message.bytes': String(s.max_message_bytes) },
      });
      this.maxMessageBytes = await topicMaxMessageBytes(admin, s.topic);
    } finally {
      await admin.disconnect();
    }
  }

  /** The topic dead letters go to. */
  get topic(): string {
    return this.settings.topic;
  }

  /**
   * The Kafka message for a dead letter: its original key, bytes and headers plus ours (the
   * value cut, and said so, if it cannot fit the topic). Counted by reason. The live service
   * sends it in the same transaction as the input offsets, so a retried batch writes no
   * dead letter twice.
   */
  message(d: DeadLetter): Message {
    const limit = (this.maxMessageBytes ?? this.settings.max_message_bytes) - HEADROOM;
    let value = d.value;
    let cut: Record<string, string> = {};
    if (value !== null && value.length > limit) {
      cut = { [DLQ_HEADERS.truncated]: String(value.length) };
      value = value.subarray(0, Math.max(0, limit));
      this.truncated++;
    }
    this.counts.set(d.reason, (this.counts.get(d.reason) ?? 0) + 1);
    return {
      key: d.key,
      value,
      headers: {
        ...(d.headers ?? {}),
        ...cut,
        [DLQ_HEADERS.reason]: d.reason,
        [DLQ_HEADERS.message]: d.message.slice(0, 1000),
        [DLQ_HEADERS.topic]: d.topic,
        [DLQ_HEADERS.partition]: String(d.partition),
        [DLQ_HEADERS.offset]: d.offset,
        [DLQ_HEADERS.timestamp]: d.timestamp,
      },
    };
  }
}
