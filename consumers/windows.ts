import { z } from 'zod';
import type { RequestLog } from '../schemas/index.js';
import { digestRecord } from './aggregates.js';
import type { EvictionStats } from './entity-map.js';
import { PaneBuilder, type AddOutcome } from './pane-builder.js';
import { WindowAssembler, type ClosedWindow } from './window-assembler.js';

export type { ClosedWindow } from './window-assembler.js';
export type { AddOutcome } from './pane-builder.js';

/** Window configuration (CONTRACTS §2). All durations in ms. */
export const windowConfigSchema = z
  .object({
    /** Window width, ms. Default 60 000. */
    size_ms: z.number().int().positive().default(60_000),
    /** How far each window advances, ms; must divide size_ms. Default 10 000. */
    slide_ms: z.number().int().positive().default(10_000),
    /** How long after its end a window still accepts records, ms. Default 5 000. */
    allowed_lateness_ms: z.number().int().nonnegative().default(5_000),
    /** Live mode: a partition silent this long (wall clock) stops holding back the watermark, ms. Default 10 000. */
    idle_partition_ms: z.number().int().positive().default(10_000),
    /** Live mode: when every partition has been silent this long, all open windows are closed, ms. Default 15 000. */
    idle_flush_ms: z.number().int().positive().default(15_000),
    /**
     * Most entities of one type in one pane of one input partition. Beyond it one-off entities
     * are evicted first and heavy ones never (segmented map, consumers/entity-map.ts), counted in
     * burstwatch_pane_evictions_total and burstwatch_pane_evicted_requests_total. Default 20 000.
     */
    max_entities_per_pane: z.number().int().positive().default(20_000),
    /** Kafka topic that records too late for every window are copied to (with their reason); null keeps only the count. Default null. */
    late_topic: z.string().min(1).nullable().default(null),
  })
  .strict()
  .refine((c) => c.size_ms % c.slide_ms === 0, { message: 'size_ms must be a multiple of slide_ms', path: ['slide_ms'] });

/** Validated window configuration. */
export type WindowConfig = z.infer<typeof windowConfigSchema>;

/** Counters of the window engine (exported as metrics by the live service). */
export interface WindowStats {
  /** Records accepted into the windows. */
  accepted: number;
  /** Records whose pane was already sealed when they arrived: counted in no window. */
  late: number;
  /** Records re-read after a restart for windows already emitted before it. */
  replayedClosed: number;
  /** Windows closed and emitted. */
  windowsClosed: number;
  /** Entities evicted by the per-pane cap, and the requests they carried. */
  evicted: EvictionStats;
}

/**
 * Event-time sliding windows per asn, ja4 and asn×ja4, in two stages:
 *
 *   records of partition p ─▶ PaneBuilder(p): panes, p's watermark, lateness, entity caps
 *                         ─▶ WindowAssembler: merges partials of all partitions; when every
 *                            partition that is not idle has sealed a pane, slides it into each
 *                            entity's windows (two-stacks) and closes the windows it completes.
 *
 * A window [s, s+size) closes when the watermark (the minimum over partitions of the largest
 * event time each delivered) reaches s + size + allowed lateness. The engine has no clock:
 * live mode passes wall time to {@link SlidingWindows.onIdle}, replay never does.
 */
export class SlidingWindows {
  private readonly builders = new Map<number, PaneBuilder>();
  private readonly assembler: WindowAssembler;
  private readonly lastActivity = new Map<number, number>();
  private readonly lastOffset = new Map<number, number>();
  private readonly idle = new Set<number>();
  /** Partitions known to have records waiting (lag > 0); they are never idle, only slow. */
  private readonly lagging = new Set<number>();
  /** Smallest offset per partition of each pane inside an open window, by pane start. */
  private readonly paneOffsets = new Map<number, Map<number, number>>();
  private restoredHorizon = Number.NEGATIVE_INFINITY;
  readonly stats: WindowStats;

  constructor(readonly config: WindowConfig) {
    this.assembler = new WindowAssembler(config.size_ms, config.slide_ms);
    this.stats = { accepted: 0, late: 0, replayedClosed: 0, windowsClosed: 0, evicted: { entities: 0, requests: 0 } };
  }

  private builder(partition: number): PaneBuilder {
    let b = this.builders.get(partition);
    if (!b) {
      const c = this.config;
      b = new PaneBuilder(partition, c.slide_ms, c.allowed_lateness_ms, c.max_entities_per_pane, this.stats.evicted);
      this.builders.set(partition, b);
      this.assembler.registerSource(partition);
    }
    return b;
  }

  /** Makes a partition hold back the watermark before it delivers anything (live: on assignment). */
  registerPartition(partition: number): void {
    this.builder(partition);
  }

  /** Forgets a partition (live: on revocation): its open panes are dropped and it no longer holds back the watermark. */
  unregisterPartition(partition: number): void {
    this.builders.delete(partition);
    this.lastActivity.delete(partition);
    this.idle.delete(partition);
    this.assembler.unregisterSource(partition);
    this.collect();
  }

  /**
   * Restores the emitted horizon after a restart: windows starting before `horizon` were
   * already emitted and made durable, so they are not emitted again.
   */
  restoreHorizon(horizon: number): void {
    if (horizon > this.restoredHorizon) this.restoredHorizon = horizon;
    if (horizon > this.assembler.nextWindowStart) this.assembler.nextWindowStart = horizon;
  }

  /** Start of the oldest window not yet closed (store it with committed offsets); null before any. */
  get horizon(): number | null {
    const h = this.assembler.nextWindowStart;
    return Number.isFinite(h) ? h : null;
  }

  /** The engine's event-time watermark, epoch ms: the minimum over active partitions (-Infinity before any record). */
  get watermark(): number {
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    let any = false;
    for (const [p, b] of this.builders) {
      max = Math.max(max, b.watermark);
      if (this.idle.has(p)) continue;
      any = true;
      min = Math.min(min, b.watermark);
    }
    return any ? min : max;
  }

  /** Panes held: open in stage 1 plus waiting in stage 2. */
  get openPanes(): number {
    let n = this.assembler.pendingPanes;
    for (const b of this.builders.values()) n += b.openPanes;
    return n;
  }

  /** Entities held inside open windows. */
  get trackedEntities(): number {
    return this.assembler.trackedEntities;
  }

  /**
   * Adds a record from `partition` at `offset` (-1 when offsets do not matter, as in replay).
   * `nowMs` is wall time in live mode (for idleness), omitted in replay.
   */
  add(r: RequestLog, partition = 0, offset = -1, nowMs?: number): AddOutcome {
    const b = this.builder(partition);
    if (offset >= 0) this.lastOffset.set(partition, offset);
    if (nowMs !== undefined) {
      this.lastActivity.set(partition, nowMs);
      if (this.idle.delete(partition)) this.assembler.progress(partition, b.sealedThrough, false);
    }
    let outcome: AddOutcome;
    if (b.paneOf(r.timestamp) < this.restoredHorizon) {
      this.stats.replayedClosed++;
      if (r.timestamp > b.watermark) b.watermark = r.timestamp;
      outcome = 'replayed';
    } else if (b.add(r, digestRecord(r), offset)) {
      this.stats.accepted++;
      outcome = 'accepted';
    } else {
      this.stats.late++;
      outcome = 'late';
    }
    if (b.canSeal()) this.sealFrom(b, false);
    return outcome;
  }

  /** Hands a builder's sealed panes to stage 2 and reports its progress. */
  private sealFrom(b: PaneBuilder, all: boolean): void {
    for (const pane of b.seal(all)) {
      if (pane.minOffset >= 0) {
        let m = this.paneOffsets.get(pane.start);
        if (!m) this.paneOffsets.set(pane.start, (m = new Map()));
        m.set(pane.source, pane.minOffset);
      }
      if (!this.assembler.addPartial(pane)) {
        // Complete already (its source was idle): nothing of it reaches a window.
        this.paneOffsets.get(pane.start)?.delete(pane.source);
      }
    }
    this.assembler.progress(b.source, b.sealedThrough, this.idle.has(b.source));
    this.collect();
  }

  private collect(): void {
    this.stats.windowsClosed = this.assembler.stats.windowsClosed;
    const next = this.assembler.nextWindowStart;
    for (const start of this.paneOffsets.keys()) if (start < next) this.paneOffsets.delete(start);
  }

  /** Requests dropped at stage 2 because their pane was complete when they arrived (a partition woke after idling). */
  get lateAtMerge(): number {
    return this.assembler.stats.lateRequests;
  }

  /** Live mode: whether `partition` has more records waiting after the batch just read (its lag). */
  setLagging(partition: number, lagging: boolean): void {
    if (lagging) this.lagging.add(partition);
    else this.lagging.delete(partition);
  }

  /** Highest input offset of `partition` already taken into the windows (or dead-lettered); -1 if none. */
  lastOffsetOf(partition: number): number {
    return this.lastOffset.get(partition) ?? -1;
  }

  /** Records that a message at `offset` was handled without reaching a window (dead-lettered). */
  markProcessed(partition: number, offset: number): void {
    const last = this.lastOffset.get(partition);
    if (last === undefined || offset > last) this.lastOffset.set(partition, offset);
  }

  /** Whether closed windows are waiting for {@link drain}. */
  hasReady(): boolean {
    return this.assembler.hasReady();
  }

  /** Takes the windows the watermark has closed so far, oldest first. */
  drain(): ClosedWindow[] {
    return this.assembler.drain();
  }

  /** End of input (replay): closes every window that holds data and returns all pending windows. */
  closeAll(): ClosedWindow[] {
    this.flushAll();
    return this.drain();
  }

  private flushAll(): void {
    for (const b of this.builders.values()) {
      for (const pane of b.seal(true)) this.assembler.addPartial(pane);
    }
    this.assembler.flush();
    this.collect();
  }

  /**
   * Live mode, called by a wall-clock timer: partitions silent for idle_partition_ms stop
   * holding back the watermark; when all are silent for idle_flush_ms, every window holding
   * data closes, as if the stream had ended (records that come later count in later windows).
   */
  onIdle(nowMs: number): void {
    let allIdleFor = Number.POSITIVE_INFINITY;
    for (const [p, b] of this.builders) {
      const last = this.lastActivity.get(p);
      if (last === undefined) {
        this.lastActivity.set(p, nowMs);
        allIdleFor = 0;
        continue;
      }
      // A partition with records waiting is slow, not idle: do not let the watermark pass it.
      const silent = this.lagging.has(p) ? 0 : nowMs - last;
      allIdleFor = Math.min(allIdleFor, silent);
      if (silent >= this.config.idle_partition_ms && !this.idle.has(p)) {
        // An idle partition hands over what it holds, so the others can move past it without
        // making its last panes late.
        this.idle.add(p);
        this.sealFrom(b, true);
      }
    }
    this.collect();
    if (this.builders.size > 0 && allIdleFor >= this.config.idle_flush_ms && this.openPanes + this.assembler.heldPanes > 0) {
      this.flushAll();
    }
  }

  /**
   * The offset from which each partition must be re-read after a crash: the smallest offset
   * still held in a pane inside an open window, else one past the last offset seen.
   */
  safeOffsets(): Map<number, number> {
    const out = new Map<number, number>();
    for (const [p, last] of this.lastOffset) out.set(p, last + 1);
    const lower = (p: number, o: number): void => {
      const cur = out.get(p);
      if (cur === undefined || o < cur) out.set(p, o);
    };
    for (const m of this.paneOffsets.values()) for (const [p, o] of m) lower(p, o);
    for (const [p, b] of this.builders) {
      const o = b.minOpenOffset();
      if (o !== undefined) lower(p, o);
    }
    return out;
  }
}
