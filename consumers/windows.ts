import { z } from 'zod';
import type { RequestLog } from '../schemas/index.js';
import { EntityAggregate, isStaticAsset, pairKey, type EntityType, type WindowAggregateRow } from './aggregates.js';

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
  })
  .strict()
  .refine((c) => c.size_ms % c.slide_ms === 0, { message: 'size_ms must be a multiple of slide_ms', path: ['slide_ms'] });

/** Validated window configuration. */
export type WindowConfig = z.infer<typeof windowConfigSchema>;

/** One slide of event time: the partial aggregates of every entity, and which input offsets they hold. */
class Pane {
  readonly asn = new Map<number, EntityAggregate>();
  readonly ja4 = new Map<string, EntityAggregate>();
  readonly pair = new Map<string, EntityAggregate>();
  /** Smallest input offset per partition that contributed to this pane. */
  readonly minOffset = new Map<number, number>();
}

/** A window that the watermark has closed, with one aggregate row per entity, sorted. */
export interface ClosedWindow {
  windowStart: number;
  windowEnd: number;
  rows: WindowAggregateRow[];
}

/** Counters of the window engine (exported as metrics by the live service). */
export interface WindowStats {
  /** Records accepted into at least one open window. */
  accepted: number;
  /** Records every one of whose windows had already closed; not counted anywhere. */
  late: number;
  /** Records re-read after a restart for windows already emitted before it. */
  replayedClosed: number;
  /** Windows closed and emitted. */
  windowsClosed: number;
}

function bump<K>(map: Map<K, EntityAggregate>, key: K): EntityAggregate {
  let agg = map.get(key);
  if (!agg) {
    agg = new EntityAggregate();
    map.set(key, agg);
  }
  return agg;
}

/** Merges a pane's aggregates into a window's; an entity's first pane is cloned rather than merged. */
function mergeInto<K>(window: Map<K, EntityAggregate>, pane: Map<K, EntityAggregate>): void {
  for (const [k, a] of pane) {
    const agg = window.get(k);
    if (agg) agg.merge(a);
    else window.set(k, a.clone());
  }
}

/**
 * Event-time sliding windows per asn, ja4 and asn×ja4, built from panes (one per slide).
 * The watermark of a partition is the largest event time it has delivered; the engine's
 * watermark is the minimum over partitions that are not idle. A window [s, s+size) closes
 * when the watermark reaches s + size + allowed lateness. The engine has no clock: live mode
 * passes wall time to {@link SlidingWindows.onIdle}, replay never does.
 */
export class SlidingWindows {
  private readonly panes = new Map<number, Pane>();
  private readonly partitionWm = new Map<number, number>();
  private readonly lastActivity = new Map<number, number>();
  private readonly lastOffset = new Map<number, number>();
  private readonly idle = new Set<number>();
  /** Partitions known to have records waiting (lag > 0); they are never idle, only slow. */
  private readonly lagging = new Set<number>();
  /** Start of the oldest window not yet closed; every window before it is final. */
  private nextWindowStart = Number.NEGATIVE_INFINITY;
  private watermarkValue = Number.NEGATIVE_INFINITY;
  private restoredHorizon = Number.NEGATIVE_INFINITY;
  /** Windows closed by the watermark and not yet taken by {@link drain}. */
  private pending: ClosedWindow[] = [];
  readonly stats: WindowStats = { accepted: 0, late: 0, replayedClosed: 0, windowsClosed: 0 };

  constructor(readonly config: WindowConfig) {}

  /** Makes a partition hold back the watermark before it delivers anything (live: on assignment). */
  registerPartition(partition: number): void {
    if (!this.partitionWm.has(partition)) this.partitionWm.set(partition, Number.NEGATIVE_INFINITY);
  }

  /** Forgets a partition (live: on revocation); it no longer holds back the watermark. */
  unregisterPartition(partition: number): void {
    this.partitionWm.delete(partition);
    this.lastActivity.delete(partition);
    this.idle.delete(partition);
    this.recomputeWatermark();
  }

  /**
   * Restores the emitted horizon after a restart: windows starting before `horizon` were
   * already emitted and made durable, so they are not emitted again.
   */
  restoreHorizon(horizon: number): void {
    if (horizon > this.restoredHorizon) this.restoredHorizon = horizon;
    if (horizon > this.nextWindowStart) this.nextWindowStart = horizon;
  }

  /** Start of the oldest window not yet closed (store it with committed offsets); null before any. */
  get horizon(): number | null {
    return Number.isFinite(this.nextWindowStart) ? this.nextWindowStart : null;
  }

  /** The engine's current event-time watermark, epoch ms (-Infinity before any record). */
  get watermark(): number {
    return this.watermarkValue;
  }

  /** Number of panes held (bounded by (size + lateness) / slide plus the spread of partitions). */
  get openPanes(): number {
    return this.panes.size;
  }

  /**
   * Adds a record from `partition` at `offset` (-1 when offsets do not matter, as in replay).
   * `nowMs` is wall time in live mode (for idleness), omitted in replay. Returns false if the
   * record was too late for every window that would contain it.
   */
  add(r: RequestLog, partition = 0, offset = -1, nowMs?: number): boolean {
    const t = r.timestamp;
    const slide = this.config.slide_ms;
    const paneStart = t - (((t % slide) + slide) % slide);
    if (offset >= 0) this.lastOffset.set(partition, offset);
    if (nowMs !== undefined) {
      this.lastActivity.set(partition, nowMs);
      if (this.idle.delete(partition)) this.recomputeWatermark();
    }
    let accepted = false;
    if (paneStart < this.nextWindowStart) {
      if (paneStart < this.restoredHorizon) this.stats.replayedClosed++;
      else this.stats.late++;
    } else {
      let pane = this.panes.get(paneStart);
      if (!pane) {
        pane = new Pane();
        this.panes.set(paneStart, pane);
      }
      if (offset >= 0) {
        const min = pane.minOffset.get(partition);
        if (min === undefined || offset < min) pane.minOffset.set(partition, offset);
      }
      const staticAsset = isStaticAsset(r.path);
      bump(pane.asn, r.asn).add(r, 'asn', staticAsset);
      if (r.ja4 !== null) {
        bump(pane.ja4, r.ja4).add(r, 'ja4', staticAsset);
        bump(pane.pair, pairKey(r.asn, r.ja4)).add(r, 'asn_ja4', staticAsset);
      }
      this.stats.accepted++;
      accepted = true;
    }
    const wm = this.partitionWm.get(partition);
    if (wm === undefined || t > wm) {
      this.partitionWm.set(partition, t);
      this.recomputeWatermark();
    }
    return accepted;
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
    return this.pending.length > 0;
  }

  /** Takes the windows the watermark has closed so far, oldest first. */
  drain(): ClosedWindow[] {
    const out = this.pending;
    this.pending = [];
    return out;
  }

  /** End of input (replay): closes every window that holds data and returns all pending windows. */
  closeAll(): ClosedWindow[] {
    let last = Number.NEGATIVE_INFINITY;
    for (const p of this.panes.keys()) if (p > last) last = p;
    if (last !== Number.NEGATIVE_INFINITY) this.closeBefore(last + this.config.slide_ms);
    return this.drain();
  }

  /**
   * Live mode, called by a wall-clock timer: partitions silent for idle_partition_ms stop
   * holding back the watermark; when all are silent for idle_flush_ms, the watermark jumps
   * past every open window so that they close, as if the stream had ended.
   */
  onIdle(nowMs: number): void {
    let allIdleFor = Number.POSITIVE_INFINITY;
    let changed = false;
    for (const p of this.partitionWm.keys()) {
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
        this.idle.add(p);
        changed = true;
      }
    }
    if (changed) this.recomputeWatermark();
    if (this.partitionWm.size > 0 && allIdleFor >= this.config.idle_flush_ms && this.panes.size > 0) {
      let last = Number.NEGATIVE_INFINITY;
      for (const p of this.panes.keys()) if (p > last) last = p;
      this.advanceWatermark(last + this.config.size_ms + this.config.allowed_lateness_ms);
    }
  }

  /**
   * The offset from which each partition must be re-read after a crash: the smallest offset
   * still held in an open pane, else one past the last offset seen. Commit exactly these.
   */
  safeOffsets(): Map<number, number> {
    const out = new Map<number, number>();
    for (const [p, last] of this.lastOffset) out.set(p, last + 1);
    for (const pane of this.panes.values()) {
      for (const [p, min] of pane.minOffset) {
        const cur = out.get(p);
        if (cur === undefined || min < cur) out.set(p, min);
      }
    }
    return out;
  }

  private recomputeWatermark(): void {
    let min = Number.POSITIVE_INFINITY;
    let any = false;
    for (const [p, wm] of this.partitionWm) {
      if (this.idle.has(p)) continue;
      any = true;
      if (wm < min) min = wm;
    }
    if (!any) {
      // Every partition idle: the watermark is the furthest any of them got.
      min = Number.NEGATIVE_INFINITY;
      for (const wm of this.partitionWm.values()) if (wm > min) min = wm;
    }
    this.advanceWatermark(min);
  }

  /** Moves the watermark forward (never back) and closes the windows it passes. */
  private advanceWatermark(wm: number): void {
    if (!(wm > this.watermarkValue)) return;
    this.watermarkValue = wm;
    const { size_ms: size, slide_ms: slide, allowed_lateness_ms: late } = this.config;
    // Windows [s, s+size) with s + size + lateness <= wm are closed.
    this.closeBefore(Math.floor((wm - size - late) / slide) * slide + slide);
  }

  /** Closes every window starting before `bound` (slide-aligned), queueing those with data. */
  private closeBefore(bound: number): void {
    const { size_ms: size, slide_ms: slide } = this.config;
    while (this.nextWindowStart < bound) {
      let first = Number.POSITIVE_INFINITY;
      for (const p of this.panes.keys()) if (p < first) first = p;
      // Skip runs of empty windows (before the data, or gaps in event time) in one step.
      const s = Math.max(this.nextWindowStart, first - size + slide);
      if (s >= bound) {
        this.nextWindowStart = bound;
        break;
      }
      const rows = this.emit(s, s + size);
      this.pending.push({ windowStart: s, windowEnd: s + size, rows });
      this.stats.windowsClosed++;
      this.nextWindowStart = s + slide;
      for (const p of this.panes.keys()) if (p < this.nextWindowStart) this.panes.delete(p);
    }
  }

  private emit(start: number, end: number): WindowAggregateRow[] {
    const asn = new Map<number, EntityAggregate>();
    const ja4 = new Map<string, EntityAggregate>();
    const pair = new Map<string, EntityAggregate>();
    for (let p = start; p < end; p += this.config.slide_ms) {
      const pane = this.panes.get(p);
      if (!pane) continue;
      mergeInto(asn, pane.asn);
      mergeInto(ja4, pane.ja4);
      mergeInto(pair, pane.pair);
    }
    const rows: WindowAggregateRow[] = [];
    const push = (type: EntityType, entries: [string, EntityAggregate][]): void => {
      entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      for (const [k, a] of entries) rows.push(a.toRow(type, k, start, end));
    };
    push('asn', [...asn].map(([k, a]) => [String(k), a]));
    push('ja4', [...ja4]);
    push('asn_ja4', [...pair]);
    return rows;
  }
}
