import type { KafkaMessage } from 'kafkajs';
import type { Config } from '../config.js';
import { DecodeError, withRetry } from '../errors.js';
import { logger } from '../logger.js';
import type { RequestLogDecoder } from '../schemas/codec.js';
import { digestRecord } from './aggregates.js';
import type { DeadLetterSink } from './dead-letter.js';
import type { EvictionStats } from './entity-map.js';
import { PaneBuilder } from './pane-builder.js';
import { encodeProgress, paneMessages } from './repartition.js';
import type { CommittedPoint, StageOutput, StageTask } from './transactional-stage.js';

/** Checkpoint of a stage-1 partition, stored as the metadata of its committed offset. */
export interface PaneCheckpoint {
  v: 2;
  /** Every pane before this was handed on (epoch ms), or null. */
  sealed: number | null;
  /** Largest event time seen, or null. */
  wm: number | null;
  /** Last offset taken into account. */
  through: number;
}

/** Parses the metadata a stage-1 partition commits with its offset; null for anything else. */
export function parsePaneCheckpoint(s: string | null | undefined): PaneCheckpoint | null {
  if (!s) return null;
  try {
    const m = JSON.parse(s) as Partial<PaneCheckpoint>;
    return m.v === 2 && typeof m.through === 'number' ? (m as PaneCheckpoint) : null;
  } catch {
    return null;
  }
}

/** Counters of stage 1, summed over its partitions (metrics). */
export interface PaneStageStats {
  messages: number;
  decoded: number;
  deadLettered: number;
  late: number;
  /** Records re-read after a restart whose panes were already handed on. */
  replayed: number;
  /** Entity partials handed to the repartition topic. */
  partials: number;
  /** Repartition messages that carried them (a bundle per pane and repartition partition, or more when large). */
  bundles: number;
  /** Progress markers sent (one per repartition partition each time). */
  markers: number;
  evicted: EvictionStats;
}

/** What stage-1 tasks share in one process. */
export interface PaneStageContext {
  config: Config;
  decoder: RequestLogDecoder;
  deadLetter: DeadLetterSink;
  late: DeadLetterSink | null;
  /** Partitions of the input topic (every progress marker carries it). */
  inputPartitions: number;
  /** Repartition topic and its partition count. */
  repartitionTopic: string;
  repartitions: number;
  stats: PaneStageStats;
}

/** A fresh stage-1 counter set. */
export function paneStageStats(): PaneStageStats {
  return { messages: 0, decoded: 0, deadLettered: 0, late: 0, replayed: 0, partials: 0, bundles: 0, markers: 0, evicted: { entities: 0, requests: 0 } };
}

/**
 * Stage 1 for one input partition: decodes request logs, pre-aggregates them into panes, and
 * when its watermark seals a pane, hands the pane's entity partials to the repartition topic
 * (keyed by entity) with a progress marker to every repartition partition. The committed
 * offset is the oldest record of an open pane, and its metadata holds the sealed bound, so a
 * restart re-reads exactly the records of open panes and counts nothing twice.
 */
export class PaneTask implements StageTask {
  readonly builder: PaneBuilder;
  private through = -1;
  /** Offsets up to this were processed before the restart that built this task. */
  private readonly restoredThrough: number;
  private readonly restoredSealed: number;
  private lastActivity: number | null = null;
  private idle = false;
  /** Whether the last batch left records waiting: such a partition is slow, never idle. */
  private lagging = false;

  constructor(
    readonly partition: number,
    committed: CommittedPoint,
    private readonly ctx: PaneStageContext,
  ) {
    const w = ctx.config.windows;
    this.builder = new PaneBuilder(partition, w.slide_ms, w.allowed_lateness_ms, w.max_entities_per_pane, ctx.stats.evicted);
    const cp = parsePaneCheckpoint(committed.metadata);
    this.restoredThrough = cp?.through ?? -1;
    this.restoredSealed = cp?.sealed ?? Number.NEGATIVE_INFINITY;
    if (cp) {
      this.builder.restore(this.restoredSealed, cp.wm ?? Number.NEGATIVE_INFINITY);
      this.through = cp.through;
    }
  }

  async handle(messages: KafkaMessage[], out: StageOutput, nowMs: number, lagging: boolean): Promise<void> {
    const { decoder, deadLetter, late, config, stats } = this.ctx;
    await withRetry(() => decoder.prepare(messages.map((m) => m.value)), {
      retries: 20,
      maxDelayMs: 15_000,
      onRetry: (err, attempt) => logger.warn({ err: (err as Error).message, attempt }, 'schema registry unavailable; retrying batch'),
    });
    if (messages.length > 0) this.lastActivity = nowMs;
    if (this.idle && messages.length > 0) {
      this.idle = false;
      this.sendProgress(out);
    }
    for (const m of messages) {
      const offset = Number(m.offset);
      stats.messages++;
      let log;
      try {
        log = decoder.decode(m.value);
        if (log.timestamp > nowMs + config.input.max_future_ms) {
          throw new DecodeError(
            'future_timestamp',
            `timestamp ${new Date(log.timestamp).toISOString()} is ${Math.round((log.timestamp - nowMs) / 1000)} s ahead of this host's clock ` +
              `(input.max_future_ms = ${config.input.max_future_ms})`,
          );
        }
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
        // Re-read after a restart: it was dead-lettered already (in the transaction that committed its offset).
        if (offset > this.restoredThrough) {
          out.send(deadLetter.topic, [deadLetter.message({ topic: config.input.topic, partition: this.partition, offset: m.offset, key: m.key, value: m.value, headers: m.headers,
            timestamp: m.timestamp, reason: err.reason, message: err.message })]);
          stats.deadLettered++;
        }
        this.through = Math.max(this.through, offset);
        continue;
      }
      stats.decoded++;
      if (offset <= this.restoredThrough && this.builder.paneOf(log.timestamp) < this.restoredSealed) {
        // Its pane was handed on (or it was late) before the restart.
        stats.replayed++;
      } else if (!this.builder.add(log, digestRecord(log), offset)) {
        stats.late++;
        if (late) {
          out.send(late.topic, [late.message({ topic: config.input.topic, partition: this.partition, offset: m.offset, key: m.key, value: m.value, headers: m.headers,
            timestamp: m.timestamp, reason: 'late',
            message: `event time ${new Date(log.timestamp).toISOString()} is in a pane that partition ${this.partition} had already sealed ` +
              `(more than windows.allowed_lateness_ms = ${config.windows.allowed_lateness_ms} behind its watermark)` })]);
        }
      }
      this.through = Math.max(this.through, offset);
      if (this.builder.canSeal()) this.handOver(out, false);
    }
    this.lagging = lagging;
  }

  /** Live idleness: a partition silent (and caught up) for idle_partition_ms hands over its open panes and stops holding the watermark back. */
  async tick(nowMs: number, out: StageOutput, highWatermark: () => Promise<number>): Promise<void> {
    if (this.lastActivity === null || this.lagging) {
      this.lastActivity = nowMs;
      return;
    }
    if (this.idle || nowMs - this.lastActivity < this.ctx.config.windows.idle_partition_ms) return;
    // Records it has not read yet (rebalancing, fetching) make it slow, never idle.
    const high = await highWatermark();
    if (this.through + 1 < high) {
      this.lastActivity = nowMs;
      return;
    }
    logger.info({ partition: this.partition, through: this.through, highWatermark: high }, 'input partition idle: handing over its open panes');
    this.idle = true;
    this.handOver(out, true);
  }

  private handOver(out: StageOutput, all: boolean): void {
    const { repartitionTopic, repartitions, stats } = this.ctx;
    for (const pane of this.builder.seal(all)) {
      for (const m of Object.values(pane.entities)) stats.partials += m.size;
      const msgs = paneMessages(pane, repartitions);
      stats.bundles += msgs.length;
      out.send(repartitionTopic, msgs);
    }
    this.sendProgress(out);
  }

  private sendProgress(out: StageOutput): void {
    const wire = encodeProgress({ kind: 'progress', source: this.partition, sealedThrough: this.builder.sealedThrough, idle: this.idle, sources: this.ctx.inputPartitions });
    this.ctx.stats.markers += this.ctx.repartitions;
    out.send(
      this.ctx.repartitionTopic,
      Array.from({ length: this.ctx.repartitions }, (_, r) => ({ key: wire.key, value: wire.value, partition: r })),
    );
  }

  commitPoint(): CommittedPoint {
    if (this.through < 0) return { offset: -1, metadata: null };
    const open = this.builder.minOpenOffset();
    const sealed = this.builder.sealedThrough;
    const wm = this.builder.watermark;
    const cp: PaneCheckpoint = {
      v: 2,
      sealed: Number.isFinite(sealed) ? sealed : null,
      wm: Number.isFinite(wm) ? wm : null,
      through: this.through,
    };
    return { offset: open ?? this.through + 1, metadata: JSON.stringify(cp) };
  }
}
