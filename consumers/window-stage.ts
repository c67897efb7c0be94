import type { Kafka, KafkaMessage } from 'kafkajs';
import type { Config } from '../config.js';
import { EntityScorer } from '../detectors/entity-scorer.js';
import { sharedWorkerTrainer } from '../detectors/population-trainer.js';
import type { Verdict } from '../detectors/verdict.js';
import { logger } from '../logger.js';
import type { PipelineSink } from '../sinks/sink.js';
import type { EntityType } from './aggregates.js';
import { readChangelogPartition } from './changelog.js';
import type { EvictionStats } from './entity-map.js';
import { decodeRepartition } from './repartition.js';
import type { CommittedPoint, StageOutput, StageTask } from './transactional-stage.js';
import { WindowAssembler, totalRequests, type AssemblerProgress, type ClosedWindow } from './window-assembler.js';

/** One message of the window-verdict topic: what a stage-2 partition decided, for the rules stage. */
export interface WindowVerdictsMessage {
  v: 1;
  /** Repartition partition that wrote it. */
  r: number;
  /** Every window starting before this is closed in partition r (null: none yet). */
  closed_through: number | null;
  /**
   * A window closed in r with its anomalous verdicts and the requests of r's entities in it
   * (summed over partitions: all traffic, for the blast-radius preview); absent on a bare
   * progress message. `requests` is absent in messages of older versions.
   */
  window?: { start: number; end: number; verdicts: Verdict[]; requests?: number };
}

/** Checkpoint of a stage-2 partition, under key `meta` in its changelog partition. */
interface WindowMeta {
  v: 1;
  through: number;
  progress: AssemblerProgress;
}

/** Counters of stage 2, summed over its partitions (metrics). */
export interface WindowStageStats {
  /** Repartition messages read (partials and markers). */
  received: number;
  /** Messages sent to the rules stage. */
  messagesSent: number;
  partials: number;
  replayed: number;
  windowsClosed: number;
  verdicts: number;
  anomalous: number;
  changelogRecords: number;
  evicted: EvictionStats;
  /** Called with the time spent scoring each closed window (waiting for its population fit included), s: the detector-latency metric. */
  onScored: ((seconds: number) => void) | null;
}

/** A fresh stage-2 counter set. */
export function windowStageStats(): WindowStageStats {
  return { received: 0, messagesSent: 0, partials: 0, replayed: 0, windowsClosed: 0, verdicts: 0, anomalous: 0, changelogRecords: 0, evicted: { entities: 0, requests: 0 }, onScored: null };
}

/** What stage-2 tasks share in one process. */
export interface WindowStageContext {
  kafka: Kafka;
  config: Config;
  /** ClickHouse (aggregates and verdicts): idempotent, flushed before each commit. */
  sinks: readonly PipelineSink[];
  changelogTopic: string;
  verdictTopic: string;
  pipelineVersion: string;
  stats: WindowStageStats;
  /** Called with each closed window and its verdicts (progress, tests). */
  onWindow?: (r: number, w: ClosedWindow, verdicts: readonly Verdict[]) => void;
}

const DETECTOR_KEY = 'd|';

/**
 * Stage 2 for one repartition partition: merges the pane partials of its entities, closes
 * windows by the progress markers of every source partition, scores them, writes aggregates
 * and verdicts to ClickHouse, and hands the anomalous verdicts and its progress to the rules
 * stage. Its detector state and progress are checkpointed to changelog partition r in the
 * same transaction as its repartition offset; its window panes are re-read from the
 * repartition topic, from the oldest partial an open window still holds.
 */
export class WindowTask implements StageTask {
  readonly assembler: WindowAssembler;
  readonly scorer: EntityScorer;
  private through = -1;
  private restoredThrough = -1;
  /** Panes before this had left every open window at the checkpoint: their re-read partials are skipped. */
  private restoredNext = Number.NEGATIVE_INFINITY;
  private checkpointedThrough = -1;
  /** Smallest repartition offset of each pane's partials, while the pane can still be in a window. */
  private readonly paneOffsets = new Map<number, number>();
  private lastClosedThrough: number | null = null;
  private allIdleSince: number | null = null;

  private constructor(
    readonly partition: number,
    private readonly ctx: WindowStageContext,
  ) {
    const w = ctx.config.windows;
    this.assembler = new WindowAssembler(w.size_ms, w.slide_ms, w.max_entities_per_pane, ctx.stats.evicted);
    this.scorer = new EntityScorer(ctx.config.scorer, ctx.pipelineVersion, { slideMs: ctx.config.windows.slide_ms, trainer: sharedWorkerTrainer() });
  }

  /** Builds the task of repartition partition r, restoring its changelog partition first. */
  static async create(r: number, committed: CommittedPoint, ctx: WindowStageContext): Promise<WindowTask> {
    const task = new WindowTask(r, ctx);
    const state = await readChangelogPartition(ctx.kafka, ctx.changelogTopic, r);
    for (const [key, value] of state) {
      if (key === 'meta') {
        const meta = JSON.parse(value.toString('utf8')) as WindowMeta;
        task.assembler.restoreProgress(meta.progress);
        task.restoredThrough = meta.through;
        task.through = meta.through;
        task.restoredNext = meta.progress.next ?? Number.NEGATIVE_INFINITY;
        task.lastClosedThrough = meta.progress.next;
      } else if (key.startsWith(DETECTOR_KEY)) {
        const rest = key.slice(DETECTOR_KEY.length);
        const bar = rest.indexOf('|');
        task.scorer.restoreEntity(rest.slice(0, bar) as EntityType, rest.slice(bar + 1), JSON.parse(value.toString('utf8')));
      } else if (EntityScorer.isScorerKey(key)) {
        task.scorer.restoreScorer(key, value.toString('utf8'));
      }
    }
    task.scorer.completeRestore();
    if (committed.offset >= 0 && task.restoredThrough < 0) {
      logger.warn({ partition: r }, 'committed offset without a changelog checkpoint; starting the partition from empty state');
    }
    return task;
  }

  async handle(messages: KafkaMessage[], out: StageOutput, nowMs: number): Promise<void> {
    const { stats } = this.ctx;
    for (const m of messages) {
      const offset = Number(m.offset);
      stats.received++;
      const msg = decodeRepartition(m.key, m.value);
      if (msg.kind === 'progress') {
        for (let p = 0; p < msg.sources; p++) this.assembler.registerSource(p);
        this.assembler.progress(msg.source, msg.sealedThrough, msg.idle);
      } else if (offset <= this.restoredThrough && msg.pane < this.restoredNext) {
        stats.replayed += msg.partials.length;
      } else {
        let added = false;
        for (const p of msg.partials) {
          // Decoded here, held by nothing else: the assembler may keep it.
          if (this.assembler.addEntityPartial(msg.pane, msg.source, p.entityType, p.entity, p.agg, true)) {
            stats.partials++;
            added = true;
          }
        }
        if (added) {
          const cur = this.paneOffsets.get(msg.pane);
          if (cur === undefined || offset < cur) this.paneOffsets.set(msg.pane, offset);
        }
      }
      this.through = Math.max(this.through, offset);
    }
    await this.closeWindows(out, nowMs);
  }

  /** Live mode: once every source has been idle for idle_flush_ms (this host's clock), every window holding data closes. */
  async tick(nowMs: number, out: StageOutput): Promise<void> {
    await this.closeWindows(out, nowMs);
  }

  private async closeWindows(out: StageOutput, nowMs: number): Promise<void> {
    if (this.assembler.allSourcesIdle) {
      this.allIdleSince ??= nowMs;
      if (nowMs - this.allIdleSince >= this.ctx.config.windows.idle_flush_ms && this.assembler.flushable) {
        this.assembler.flush();
      }
    } else this.allIdleSince = null;
    const { stats, sinks, verdictTopic } = this.ctx;
    const r = this.partition;
    const closed = this.assembler.drain();
    for (const w of closed) {
      // Population fits run in a worker thread; the one this window needs was requested a window ago.
      const t0 = performance.now();
      await this.scorer.settle();
      const verdicts = this.scorer.scoreWindow(w);
      stats.onScored?.((performance.now() - t0) / 1000);
      for (const s of sinks) {
        if (s.writeAggregates) await s.writeAggregates(w.rows);
        if (s.writeVerdicts) await s.writeVerdicts(verdicts);
      }
      const anomalous = verdicts.filter((v) => v.anomalous);
      stats.windowsClosed++;
      stats.verdicts += verdicts.length;
      stats.anomalous += anomalous.length;
      const msg: WindowVerdictsMessage = { v: 1, r, closed_through: w.windowStart + this.ctx.config.windows.slide_ms, window: { start: w.windowStart, end: w.windowEnd, verdicts: anomalous, requests: totalRequests(w) } };
      out.send(verdictTopic, [{ key: String(r), value: JSON.stringify(msg), partition: 0 }]);
      stats.messagesSent++;
      this.ctx.onWindow?.(r, w, verdicts);
    }
    const next = this.assembler.nextWindowStart;
    const closedThrough = Number.isFinite(next) ? next : null;
    if (closedThrough !== this.lastClosedThrough) {
      this.lastClosedThrough = closedThrough;
      const msg: WindowVerdictsMessage = { v: 1, r, closed_through: closedThrough };
      out.send(verdictTopic, [{ key: String(r), value: JSON.stringify(msg), partition: 0 }]);
      stats.messagesSent++;
    }
    for (const pane of this.paneOffsets.keys()) if (pane < next) this.paneOffsets.delete(pane);
    if (closed.length > 0 || this.through !== this.checkpointedThrough || out.size > 0) this.checkpoint(out);
  }

  /** Detector changes since the last checkpoint, and the progress, to changelog partition r. */
  private checkpoint(out: StageOutput): void {
    const changes = this.scorer.takeChanges();
    const messages = changes.map((c) => ({
      key: `${DETECTOR_KEY}${c.type}|${c.entity}`,
      value: c.state === null ? null : JSON.stringify(c.state),
      partition: this.partition,
    }));
    for (const c of this.scorer.takeScorerChanges()) messages.push({ key: c.key, value: c.value, partition: this.partition });
    this.checkpointedThrough = this.through;
    if (this.through >= 0) {
      const meta: WindowMeta = { v: 1, through: this.through, progress: this.assembler.progressSnapshot() };
      messages.push({ key: 'meta', value: JSON.stringify(meta), partition: this.partition });
    }
    this.ctx.stats.changelogRecords += messages.length;
    out.send(this.ctx.changelogTopic, messages);
  }

  commitPoint(): CommittedPoint {
    if (this.through < 0) return { offset: -1, metadata: null };
    let min = this.through + 1;
    for (const o of this.paneOffsets.values()) if (o < min) min = o;
    return { offset: min, metadata: null };
  }
}
