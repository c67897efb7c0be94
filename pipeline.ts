import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Config } from './config.js';
import { SlidingWindows, type AddOutcome, type ClosedWindow } from './consumers/windows.js';
import { totalRequests } from './consumers/window-assembler.js';
import { EntityScorer } from './detectors/entity-scorer.js';
import { sharedWorkerTrainer } from './detectors/population-trainer.js';
import type { Verdict } from './detectors/verdict.js';
import { RuleLifecycle, type RuleChange } from './rules/lifecycle.js';
import type { RequestLog } from './schemas/index.js';
import type { PipelineSink } from './sinks/sink.js';

/** The version in package.json (stamped on every verdict). */
export function packageVersion(): string {
  for (const rel of ['./package.json', '../package.json']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return (JSON.parse(readFileSync(p, 'utf8')) as { version: string }).version;
  }
  return '0.0.0';
}

/** Running totals of what the pipeline produced (for progress lines and metrics). */
export interface PipelineTotals {
  windows: number;
  verdicts: number;
  anomalous: number;
  ruleUpserts: number;
  ruleDeletes: number;
}

/**
 * The whole data path after decoding, in one process (replay). The live service runs the same
 * stages (PaneBuilder, WindowAssembler, EntityScorer, RuleLifecycle) as three consumer groups
 * joined by Kafka transactions (cli/service.ts, docs/scaling.md):
 *
 *   request log ─▶ SlidingWindows (event time, panes, watermark)
 *               ─▶ closed window: aggregates per asn / ja4 / asn_ja4 ─▶ sinks.writeAggregates
 *               ─▶ EntityScorer (volume, population, shift + decision policy) ─▶ sinks.writeVerdicts
 *               ─▶ RuleLifecycle (create / renew / expire)            ─▶ sinks.writeRuleChanges
 *
 * Nothing here reads the wall clock: replay gives the same output for the same file and config.
 */
export class Pipeline {
  readonly windows: SlidingWindows;
  readonly scorer: EntityScorer;
  readonly rules: RuleLifecycle;
  readonly totals: PipelineTotals = { windows: 0, verdicts: 0, anomalous: 0, ruleUpserts: 0, ruleDeletes: 0 };
  /** Called after each closed window is handed to the sinks (progress, metrics). */
  onWindow: ((w: ClosedWindow, verdicts: readonly Verdict[], changes: readonly RuleChange[]) => void) | null = null;

  constructor(
    readonly config: Config,
    readonly sinks: readonly PipelineSink[],
  ) {
    this.windows = new SlidingWindows(config.windows);
    this.scorer = new EntityScorer(config.scorer, packageVersion(), { trackChanges: false, slideMs: config.windows.slide_ms, trainer: sharedWorkerTrainer() });
    this.rules = new RuleLifecycle(config.rules, { slideMs: config.windows.slide_ms });
  }

  /** Connects every sink (creates tables and topics). */
  async connect(): Promise<void> {
    for (const s of this.sinks) await s.connect();
  }

  /** Adds one decoded record: accepted, late (its pane already sealed), or replayed (its windows emitted before a restart). */
  ingest(log: RequestLog, partition = 0, offset = -1, nowMs?: number): AddOutcome {
    return this.windows.add(log, partition, offset, nowMs);
  }

  /** Whether closed windows wait to be processed. */
  get hasClosedWindows(): boolean {
    return this.windows.hasReady();
  }

  /** Scores the windows the watermark has closed and hands everything to the sinks (not yet flushed). */
  async processClosed(): Promise<number> {
    const closed = this.windows.drain();
    for (const w of closed) await this.processWindow(w);
    return closed.length;
  }

  private async processWindow(w: ClosedWindow): Promise<void> {
    // Rules that lapsed before this window ended go first, then this window's verdicts may renew or create.
    const expired = this.rules.onWatermark(w.windowEnd);
    // Population fits run in a worker thread; the one this window needs was requested a window ago.
    await this.scorer.settle();
    const verdicts = this.scorer.scoreWindow(w);
    const changes = [...expired, ...this.rules.onWindow(verdicts, totalRequests(w))];
    for (const s of this.sinks) {
      if (s.writeAggregates) await s.writeAggregates(w.rows);
      if (s.writeVerdicts) await s.writeVerdicts(verdicts);
      if (s.writeRuleChanges && changes.length > 0) await s.writeRuleChanges(changes);
    }
    this.totals.windows++;
    this.totals.verdicts += verdicts.length;
    for (const v of verdicts) if (v.anomalous) this.totals.anomalous++;
    for (const c of changes) {
      if (c.op === 'upsert') this.totals.ruleUpserts++;
      else this.totals.ruleDeletes++;
    }
    this.onWindow?.(w, verdicts, changes);
  }

  /** Makes everything handed to the sinks durable; after this, input offsets may be committed. */
  async flush(): Promise<void> {
    await Promise.all(this.sinks.map((s) => s.flush()));
  }

  /** End of input (replay): closes all windows, lets the remaining rules expire in event time, flushes. */
  async finish(): Promise<void> {
    for (const w of this.windows.closeAll()) await this.processWindow(w);
    const expired = this.rules.expireAll();
    for (const s of this.sinks) if (s.writeRuleChanges && expired.length > 0) await s.writeRuleChanges(expired);
    this.totals.ruleDeletes += expired.length;
    await this.flush();
  }

  /** Flushes and closes every sink. */
  async close(): Promise<void> {
    for (const s of this.sinks) await s.close();
  }
}
