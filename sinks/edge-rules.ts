import type { Kafka } from 'kafkajs';
import { z } from 'zod';
import { TopicWriter } from '../consumers/kafka-client.js';
import type { RuleChange } from '../rules/lifecycle.js';
import { encodeSingleObject } from '../schemas/codec.js';
import { edgeRuleToAvro, edgeRuleType } from '../schemas/index.js';
import type { PipelineSink } from './sink.js';

/** Settings of the edge-rule topic. */
export const edgeRulesConfigSchema = z
  .object({
    /** Compacted topic that edge nodes follow. Default `edge-rules`. */
    topic: z.string().min(1).default('edge-rules'),
    /** Partitions when the topic is created. Default 3. */
    partitions: z.number().int().positive().default(3),
    /** Replication factor when the topic is created. Default 1 (local broker); use 3 in production. */
    replication_factor: z.number().int().positive().default(1),
    /** How long tombstones stay readable, ms: an edge node offline longer must re-bootstrap. Default 86 400 000. */
    delete_retention_ms: z.number().int().positive().default(86_400_000),
    /** Segment roll, ms: compaction only cleans closed segments. Default 3 600 000. */
    segment_ms: z.number().int().positive().default(3_600_000),
  })
  .strict();

/** Validated edge-rule topic settings. */
export type EdgeRulesSettings = z.infer<typeof edgeRulesConfigSchema>;

/**
 * Publishes rule changes to the compacted edge-rule topic: key = rule id, value = the rule in
 * Avro single-object encoding, tombstone (null value) on delete. The producer is idempotent
 * with one request in flight, so a key's updates stay in order; re-publishing the same change
 * is harmless because compaction keeps the last value per key.
 */
export class EdgeRuleSink implements PipelineSink {
  readonly name = 'edge-rules';
  /** The underlying writer (metrics). */
  readonly writer: TopicWriter;

  constructor(
    kafka: Kafka,
    readonly settings: EdgeRulesSettings,
  ) {
    this.writer = new TopicWriter(kafka, {
      topic: settings.topic,
      partitions: settings.partitions,
      replicationFactor: settings.replication_factor,
      configs: {
        'cleanup.policy': 'compact',
        'delete.retention.ms': String(settings.delete_retention_ms),
        'segment.ms': String(settings.segment_ms),
        'min.cleanable.dirty.ratio': '0.1',
      },
    });
  }

  /** Messages published (a metric). */
  get published(): number {
    return this.writer.sent;
  }

  connect(): Promise<void> {
    return this.writer.connect();
  }

  async writeRuleChanges(changes: readonly RuleChange[]): Promise<void> {
    for (const c of changes) {
      this.writer.enqueue({
        key: c.rule.rule_id,
        value: c.op === 'delete' ? null : encodeSingleObject(edgeRuleType, edgeRuleToAvro(c.rule)),
        headers: { 'burstwatch.op': c.op, 'burstwatch.at': String(c.at) },
      });
    }
  }

  flush(): Promise<void> {
    return this.writer.flush();
  }

  close(): Promise<void> {
    return this.writer.close();
  }
}
