import type { Kafka } from 'kafkajs';
import { z } from 'zod';
import { ensureTopic, type TopicSpec } from './kafka-client.js';

/** Internal topics and groups of the live service's stages (docs/scaling.md §4). */
export const topologyConfigSchema = z
  .object({
    /** Repartition topic between stage 1 (panes) and stage 2 (windows), keyed by entity. Default `<input.group_id>-panes`. */
    repartition_topic: z.string().min(1).nullable().default(null),
    /** Partitions of the repartition topic when created: the most stage-2 processes that can share the work. Default 6. */
    repartition_partitions: z.number().int().positive().default(6),
    /** Retention of the repartition topic, ms: at least a window plus lateness plus the longest outage to recover from. Default 1 day. */
    repartition_retention_ms: z.number().int().positive().default(86_400_000),
    /** Compacted changelog of stage-2 state (detector state and progress), one partition per repartition partition. Default `<input.group_id>-windows-changelog`. */
    changelog_topic: z.string().min(1).nullable().default(null),
    /** Topic from stage 2 to the rules stage: closed windows' anomalous verdicts and progress (1 partition). Default `<input.group_id>-window-verdicts`. */
    verdict_topic: z.string().min(1).nullable().default(null),
    /** Compacted changelog of the rules stage (rules in force and progress). Default `<input.group_id>-rules-changelog`. */
    rules_changelog_topic: z.string().min(1).nullable().default(null),
    /** Replication factor of the internal topics when created. Default 1. */
    replication_factor: z.number().int().positive().default(1),
  })
  .strict();

/** Validated topology settings. */
export type TopologySettings = z.infer<typeof topologyConfigSchema>;

/** The internal topic names: configured, or derived from the group id as Kafka Streams derives them from its application id. */
export interface InternalTopics {
  repartition: string;
  changelog: string;
  verdicts: string;
  rulesChangelog: string;
}

/** Resolves {@link InternalTopics} for `groupId`. */
export function internalTopics(t: TopologySettings, groupId: string): InternalTopics {
  return {
    repartition: t.repartition_topic ?? `${groupId}-panes`,
    changelog: t.changelog_topic ?? `${groupId}-windows-changelog`,
    verdicts: t.verdict_topic ?? `${groupId}-window-verdicts`,
    rulesChangelog: t.rules_changelog_topic ?? `${groupId}-rules-changelog`,
  };
}

/** Consumer groups of the three stages; stage 1 uses `input.group_id` itself, so its committed input offsets keep their meaning. */
export function stageGroups(groupId: string): { panes: string; windows: string; rules: string } {
  return { panes: groupId, windows: `${groupId}-windows`, rules: `${groupId}-rules` };
}

/**
 * Creates the internal topics if missing and returns the repartition topic's actual
 * partition count (an existing topic keeps its own; it cannot shrink without a reset).
 */
export async function ensureInternalTopics(kafka: Kafka, settings: TopologySettings, names: InternalTopics): Promise<number> {
  const t = { ...settings, repartition_topic: names.repartition, changelog_topic: names.changelog, verdict_topic: names.verdicts,
    rules_changelog_topic: names.rulesChangelog };
  const admin = kafka.admin();
  await admin.connect();
  try {
    const specs: TopicSpec[] = [
      { topic: t.repartition_topic, partitions: t.repartition_partitions, replicationFactor: t.replication_factor,
        configs: { 'cleanup.policy': 'delete', 'retention.ms': String(t.repartition_retention_ms) } },
      { topic: t.changelog_topic, partitions: t.repartition_partitions, replicationFactor: t.replication_factor, configs: { 'cleanup.policy': 'compact' } },
      { topic: t.verdict_topic, partitions: 1, replicationFactor: t.replication_factor,
        configs: { 'cleanup.policy': 'delete', 'retention.ms': String(t.repartition_retention_ms) } },
      { topic: t.rules_changelog_topic, partitions: 1, replicationFactor: t.replication_factor, configs: { 'cleanup.policy': 'compact' } },
    ];
    for (const s of specs) await ensureTopic(admin, s);
    const meta = await admin.fetchTopicMetadata({ topics: [t.repartition_topic, t.changelog_topic] });
    const count = (name: string): number => meta.topics.find((x) => x.name === name)?.partitions.length ?? 0;
    const r = count(t.repartition_topic);
    if (count(t.changelog_topic) !== r) {
      throw new Error(
        `topology: ${t.changelog_topic} has ${count(t.changelog_topic)} partitions but ${t.repartition_topic} has ${r}; they must match (one changelog partition per stage-2 partition)`,
      );
    }
    return r;
  } finally {
    await admin.disconnect();
  }
}
