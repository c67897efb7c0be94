import type { Kafka, KafkaMessage } from 'kafkajs';
import { ENTITY_TYPES } from '../consumers/aggregates.js';
import { readChangelogPartition } from '../consumers/changelog.js';
import type { CommittedPoint, StageOutput, StageTask } from '../consumers/transactional-stage.js';
import type { WindowVerdictsMessage } from '../consumers/window-stage.js';
import type { Verdict } from '../detectors/verdict.js';
import type { PipelineSink } from '../sinks/sink.js';
import { RuleLifecycle, type RuleChange, type RuleLifecycleConfig } from './lifecycle.js';

/** Checkpoint of the rules stage, under key `meta` of its changelog. */
interface RulesMeta {
  v: 1;
  through: number;
  /** Every window starting before this has been decided. */
  decided: number | null;
  /** closed_through of each stage-2 partition. */
  closed: Record<string, number | null>;
}

/** Counters of the rules stage (metrics). */
export interface RuleStageStats {
  /** Window-verdict messages read. */
  received: number;
  windows: number;
  upserts: number;
  deletes: number;
}

/** A fresh counter set. */
export function ruleStageStats(): RuleStageStats {
  return { received: 0, windows: 0, upserts: 0, deletes: 0 };
}

/** What the rules task needs. */
export interface RuleStageContext {
  kafka: Kafka;
  config: RuleLifecycleConfig;
  /** The windows' slide, ms (windows.slide_ms). */
  slideMs: number;
  /** Stage-2 partitions whose progress must all pass a window before it is decided. */
  repartitions: number;
  changelogTopic: string;
  /** Edge-rule topic and ClickHouse rule_events: idempotent by rule id and event time. */
  sinks: readonly PipelineSink[];
  stats: RuleStageStats;
  onChanges?: (changes: readonly RuleChange[]) => void;
}


/**
 * The rules stage: one task over the single partition of the window-verdict topic. Scoping
 * prefers an ASN×JA4 pair over its whole ASN or fingerprint, which needs the verdicts of all
 * entity types of a window together; stage 2 partitions entities apart, so this stage waits
 * until every stage-2 partition has closed a window, then runs the rule lifecycle on the
 * window's anomalous verdicts, in window order. Rules in force and progress are checkpointed
 * to its own compacted changelog in the same transaction as its offset.
 */
export class RuleTask implements StageTask {
  readonly rules: RuleLifecycle;
  private readonly closed = new Map<number, number>();
  private readonly pending = new Map<number, { end: number; verdicts: Verdict[]; requests: number | undefined; minOffset: number }>();
  private decided = Number.NEGATIVE_INFINITY;
  private through = -1;
  private restoredThrough = -1;
  private restoredDecided = Number.NEGATIVE_INFINITY;

  private constructor(private readonly ctx: RuleStageContext) {
    this.rules = new RuleLifecycle(ctx.config, { slideMs: ctx.slideMs });
  }

  static async create(ctx: RuleStageContext): Promise<RuleTask> {
    const task = new RuleTask(ctx);
    const state = await readChangelogPartition(ctx.kafka, ctx.changelogTopic, 0);
    for (const [key, value] of state) {
      if (key === 'meta') {
        const meta = JSON.parse(value.toString('utf8')) as RulesMeta;
        task.through = meta.through;
        task.restoredThrough = meta.through;
        task.decided = meta.decided ?? Number.NEGATIVE_INFINITY;
        task.restoredDecided = task.decided;
        // Capped at the decided bound: later windows are decided again only once the re-read
        // progress that followed their verdicts the first time has been read again.
        for (const [r, c] of Object.entries(meta.closed)) task.closed.set(Number(r), Math.min(c ?? Number.NEGATIVE_INFINITY, task.decided));
      } else if (RuleLifecycle.isStateKey(key)) {
        task.rules.restoreState(key, value.toString('utf8'));
      }
    }
    return task;
  }

  async handle(messages: KafkaMessage[], out: StageOutput): Promise<void> {
    for (const m of messages) {
      const offset = Number(m.offset);
      this.ctx.stats.received++;
      this.through = Math.max(this.through, offset);
      if (m.value === null) continue;
      const msg = JSON.parse(m.value.toString('utf8')) as WindowVerdictsMessage;
      if (msg.window) {
        if (msg.window.start < this.decided || (offset <= this.restoredThrough && msg.window.start < this.restoredDecided)) continue;
        const w = this.pending.get(msg.window.start) ?? { end: msg.window.end, verdicts: [], requests: 0, minOffset: offset };
        w.verdicts.push(...msg.window.verdicts);
        // A total is known only if every partition's message carried one.
        w.requests = w.requests === undefined || msg.window.requests === undefined ? undefined : w.requests + msg.window.requests;
        w.minOffset = Math.min(w.minOffset, offset);
        this.pending.set(msg.window.start, w);
      }
      if (msg.closed_through !== null) this.closed.set(msg.r, Math.max(this.closed.get(msg.r) ?? Number.NEGATIVE_INFINITY, msg.closed_through));
    }
    await this.decide(out);
  }

  /** Decides every pending window that all stage-2 partitions have closed, oldest first. */
  private async decide(out: StageOutput): Promise<void> {
    let bound = Number.POSITIVE_INFINITY;
    for (let r = 0; r < this.ctx.repartitions; r++) bound = Math.min(bound, this.closed.get(r) ?? Number.NEGATIVE_INFINITY);
    const starts = [...this.pending.keys()].filter((s) => s < bound).sort((a, b) => a - b);
    const order = (v: Verdict): number => ENTITY_TYPES.indexOf(v.entity_type);
    for (const start of starts) {
      const w = this.pending.get(start) as { end: number; verdicts: Verdict[]; requests: number | undefined };
      this.pending.delete(start);
      // The order of the single-process engine: by entity type, then entity.
      w.verdicts.sort((a, b) => order(a) - order(b) || (a.entity < b.entity ? -1 : a.entity > b.entity ? 1 : 0));
      const changes = [...this.rules.onWatermark(w.end), ...this.rules.onWindow(w.verdicts, w.requests)];
      for (const s of this.ctx.sinks) if (s.writeRuleChanges && changes.length > 0) await s.writeRuleChanges(changes);
      for (const c of changes) {
        if (c.op === 'upsert') this.ctx.stats.upserts++;
        else this.ctx.stats.deletes++;
      }
      this.ctx.stats.windows++;
      this.decided = start + 1;
      if (changes.length > 0) this.ctx.onChanges?.(changes);
    }
    // Rules in force, hysteresis counts, offences and recent traffic: one key each.
    const messages = this.rules.takeStateChanges().map(({ key, value }) => ({ key, value, partition: 0 }));
    const closed: Record<string, number | null> = {};
    for (const [r, c] of this.closed) closed[r] = Number.isFinite(c) ? c : null;
    const meta: RulesMeta = { v: 1, through: this.through, decided: Number.isFinite(this.decided) ? this.decided : null, closed };
    messages.push({ key: 'meta', value: JSON.stringify(meta), partition: 0 });
    out.send(this.ctx.changelogTopic, messages);
  }

  /** Windows waiting for some stage-2 partition to close them. */
  get pendingWindows(): number {
    return this.pending.size;
  }

  commitPoint(): CommittedPoint {
    if (this.through < 0) return { offset: -1, metadata: null };
    let min = this.through + 1;
    for (const w of this.pending.values()) min = Math.min(min, w.minOffset);
    return { offset: min, metadata: null };
  }
}
