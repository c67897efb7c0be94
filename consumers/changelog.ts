import { randomUUID } from 'node:crypto';
import type { Kafka } from 'kafkajs';
import { BurstwatchError } from '../errors.js';
import { logger } from '../logger.js';

/**
 * A changelog restore failed: its throwaway group's consumer crashed. Retriable (the
 * coordinator may be moving), but kafkajs reports a missing READ on the `burstwatch-restore-`
 * groups as a mere "Failed to find group coordinator" (tulios/kafkajs#1654), so the stage gives
 * up after a few in a row while its own group works ({@link RESTORE_ATTEMPTS}).
 */
export class RestoreError extends BurstwatchError {
  constructor(topic: string, partition: number, groupId: string, cause: unknown) {
    super(
      `restore of ${topic} partition ${partition} through group ${groupId} failed: ${(cause as Error)?.message ?? String(cause)}` +
        ' (if this repeats, grant the service READ on the groups prefixed burstwatch-restore-; docs/security.md)',
      { retriable: true, cause },
    );
  }
}

/** Restores that may fail in a row, while the stage's own group works, before the stage stops. */
export const RESTORE_ATTEMPTS = 5;

/**
 * Reads one partition of a compacted changelog topic from the beginning to its high
 * watermark and returns the latest value of each key (tombstoned keys are absent). Committed
 * data only (read_committed). kafkajs has no manual assignment, so a throwaway consumer group
 * subscribes to the topic and keeps only `partition`; the end is known from the batch-end
 * events, which also fire for batches holding only transaction markers.
 */
export async function readChangelogPartition(kafka: Kafka, topic: string, partition: number): Promise<Map<string, Buffer>> {
  const admin = kafka.admin();
  await admin.connect();
  let high: number;
  let low: number;
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    const p = offsets.find((o) => o.partition === partition);
    high = Number(p?.high ?? 0);
    low = Number(p?.low ?? 0);
  } finally {
    await admin.disconnect();
  }
  const state = new Map<string, Buffer>();
  if (high <= low) return state;
  const groupId = `burstwatch-restore-${randomUUID()}`;
  const consumer = kafka.consumer({ groupId, readUncommitted: false, allowAutoTopicCreation: false });
  let finish: () => void = () => undefined;
  let fail: (err: unknown) => void = () => undefined;
  const done = new Promise<void>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  // A consumer that crashes for good (no READ on the restore group, say) fails the restore
  // instead of leaving it waiting for ever; the stage then retries or stops on the error.
  consumer.on(consumer.events.CRASH, (e) => {
    if (!e.payload.restart) fail(new RestoreError(topic, partition, groupId, e.payload.error));
  });
  const reached = (lastOffset: string | number | null | undefined): void => {
    if (lastOffset !== null && lastOffset !== undefined && Number(lastOffset) >= high - 1) finish();
  };
  consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
    if (e.payload.partition === partition) reached(e.payload.lastOffset);
  });
  const t0 = Date.now();
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        if (batch.partition !== partition) return;
        for (const m of batch.messages) {
          const key = m.key?.toString() ?? '';
          if (m.value === null) state.delete(key);
          else state.set(key, m.value);
        }
        reached(batch.lastOffset());
      },
    });
    await done;
  } finally {
    await consumer.disconnect();
    const admin2 = kafka.admin();
    await admin2.connect();
    await admin2.deleteGroups([groupId]).catch(() => undefined);
    await admin2.disconnect();
  }
  logger.info({ topic, partition, keys: state.size, ms: Date.now() - t0 }, 'changelog partition restored');
  return state;
}
