import { ENTITY_TYPES, EntityAggregate, type EntityType, type WindowAggregateRow } from './aggregates.js';
import { BoundedEntityMap, type EvictionStats } from './entity-map.js';
import type { PanePartial } from './pane-builder.js';

/** A window that the watermark has closed, with one aggregate row per entity, sorted by type then entity. */
export interface ClosedWindow {
  windowStart: number;
  windowEnd: number;
  rows: WindowAggregateRow[];
}

/** Requests of all traffic in a window (of one stage-2 partition's entities): the sum over its ASN rows, since every record has an ASN. */
export function totalRequests(w: ClosedWindow): number {
  let n = 0;
  for (const r of w.rows) if (r.entity_type === 'asn') n += r.requests;
  return n;
}

/** Most empty windows emitted for one gap in the data: more than any detector's history, after which every entity is quiet. */
const GAP_WINDOWS = 1_000;

interface Item {
  pane: number;
  /** The pane's own aggregate. */
  agg: EntityAggregate;
  /** Once its block is closed: the merge of this pane and every later pane of its block (right fold). */
  suffix?: EntityAggregate;
}

/**
 * One entity's panes inside the open windows, as a sliding aggregation over blocks of one
 * window's length aligned to the epoch (the two-stacks idea of Tangwongsan, Hirzel & Schneider,
 * "In-order sliding-window aggregation in worst-case constant time", VLDB J. 2021, with its
 * flips pinned to block boundaries). A window [s, s + size) covers the tail of block k and the
 * head of block k + 1: its aggregate is the right fold of k's panes from s (suffixes, computed
 * once when k is complete) merged with the left fold of k + 1's panes (a running prefix). Cost:
 * O(1) merges per pane and one merge per window, whatever size / slide is.
 *
 * Pinning the flips matters because Space-Saving merges (top paths, the busiest IP) are not
 * associative: with the flips of plain two-stacks, which depend on when the stacks last
 * emptied, a restart that re-reads the open windows would fold the same panes in another order.
 * Here the association depends on the panes and the window start alone.
 */
class EntitySlide {
  /** Panes held, oldest first, all inside the windows not yet closed. */
  private items: Item[] = [];
  /** Block of the running prefix, or NaN when none is open. */
  private prefixBlock = Number.NaN;
  /** Left fold of the prefix block's panes; shared with the first pane's aggregate until something is merged into it. */
  private prefix: EntityAggregate | null = null;
  private prefixOwned = false;

  constructor(private readonly sizeMs: number) {}

  get empty(): boolean {
    return this.items.length === 0;
  }

  /** Requests in the pane starting at `pane` if it is the newest held, else 0 (the entity had no data in it). */
  requestsOfNewest(pane: number): number {
    const last = this.items[this.items.length - 1];
    return last !== undefined && last.pane === pane ? last.agg.requests : 0;
  }

  private blockOf(pane: number): number {
    return Math.floor(pane / this.sizeMs);
  }

  push(pane: number, agg: EntityAggregate): void {
    const block = this.blockOf(pane);
    if (block !== this.prefixBlock) {
      // Panes arrive in order: the open block is complete.
      this.closeBlock();
      this.prefixBlock = block;
      this.prefix = agg;
      this.prefixOwned = false;
    } else {
      if (!this.prefixOwned) {
        this.prefix = (this.prefix as EntityAggregate).clone();
        this.prefixOwned = true;
      }
      (this.prefix as EntityAggregate).merge(agg);
    }
    this.items.push({ pane, agg });
  }

  /** Computes the suffixes of the open block's panes, newest to oldest, and closes it. */
  private closeBlock(): void {
    if (Number.isNaN(this.prefixBlock)) return;
    let acc: EntityAggregate | null = null;
    for (let i = this.items.length - 1; i >= 0; i--) {
      const it = this.items[i] as Item;
      if (this.blockOf(it.pane) !== this.prefixBlock) break;
      if (acc === null) acc = it.agg;
      else {
        const merged: EntityAggregate = it.agg.clone();
        merged.merge(acc);
        acc = merged;
      }
      it.suffix = acc;
    }
    this.prefixBlock = Number.NaN;
    this.prefix = null;
    this.prefixOwned = false;
  }

  /** Drops panes that start before `start`. */
  evictBefore(start: number): void {
    let n = 0;
    while (n < this.items.length && (this.items[n] as Item).pane < start) n++;
    if (n > 0) this.items.splice(0, n);
    if (this.items.length === 0) this.closeBlock();
  }

  /**
   * The aggregate of the window starting at `start` over every pane held (call
   * {@link evictBefore} with `start` first; every pane held must lie inside the window). Do not
   * mutate it.
   */
  query(start: number): EntityAggregate | null {
    const first = this.items[0];
    if (!first) return null;
    const k = this.blockOf(start);
    if (start === k * this.sizeMs) {
      // The window is exactly block k, which is still the open block: its running prefix.
      return this.prefix;
    }
    // Nothing held of block k: every pane is in block k + 1, the open one.
    if (this.blockOf(first.pane) !== k) return this.prefix;
    // The window runs past the end of block k, so every pane of k is in: close it if still open.
    if (this.prefixBlock === k) this.closeBlock();
    const left = first.suffix as EntityAggregate;
    if (this.prefix === null) return left;
    const merged = left.clone();
    merged.merge(this.prefix);
    return merged;
  }
}

/** Counters of stage 2. */
export interface AssemblerStats {
  /** Windows closed and emitted. */
  windowsClosed: number;
  /** Requests in pane partials that arrived after their pane was complete (a source woke after idling). */
  lateRequests: number;
}

/** Checkpointed progress of a {@link WindowAssembler} (null stands for -Infinity). */
export interface AssemblerProgress {
  complete: number | null;
  next: number | null;
  sources: Record<string, { sealed: number | null; idle: boolean }>;
}

interface SourceState {
  sealedThrough: number;
  idle: boolean;
}

/**
 * Stage 2 of the window engine: merges the pane partials of every source partition, and when
 * every source has sealed a pane, slides it into the windows of each entity and closes the
 * windows it completes. The watermark here is the minimum sealed bound over sources that
 * are not idle. In one process stage 1 hands panes over in memory; scaled out, the partials
 * travel through a repartition topic keyed by entity, and this stage runs per partition of it.
 */
export class WindowAssembler {
  private readonly sources = new Map<number, SourceState>();
  /** Panes some source has sealed and not every source has: start → merged partials. */
  /**
   * Panes some source has sealed and not every source has: start → each source's partials.
   * They are merged only when the pane completes, in source order, so that results never
   * depend on the order in which sources' partials happened to arrive (Space-Saving ties, and
   * so top paths, would).
   */
  private readonly pending = new Map<number, Map<number, Record<EntityType, BoundedEntityMap>>>();
  private readonly slides: Record<EntityType, Map<string, EntitySlide>> = { asn: new Map(), ja4: new Map(), asn_ja4: new Map() };
  /** Every pane starting before this has been slid into the windows. */
  private completeBelow = Number.NEGATIVE_INFINITY;
  /** Whether a window with data has been closed (gaps are filled only after one). */
  private emittedData = false;
  /** Starts of the panes slid into the windows and not yet evicted, ascending. */
  private held: number[] = [];
  /** Start of the oldest window not yet closed. */
  nextWindowStart = Number.NEGATIVE_INFINITY;
  private ready: ClosedWindow[] = [];
  readonly stats: AssemblerStats = { windowsClosed: 0, lateRequests: 0 };

  constructor(
    private readonly sizeMs: number,
    private readonly slideMs: number,
    /** Cap of the merged pending pane per entity type, when partials arrive one entity at a time. */
    private readonly maxEntitiesPerPane = Number.POSITIVE_INFINITY,
    private readonly evictions: EvictionStats = { entities: 0, requests: 0 },
  ) {}

  /** Makes a source hold back the watermark before it seals anything. */
  registerSource(source: number): void {
    if (!this.sources.has(source)) this.sources.set(source, { sealedThrough: Number.NEGATIVE_INFINITY, idle: false });
  }

  /** Forgets a source; it no longer holds back the watermark. */
  unregisterSource(source: number): void {
    this.sources.delete(source);
    this.advance();
  }

  /** Progress to checkpoint: the complete bound, the next window and every source's sealed bound. */
  progressSnapshot(): AssemblerProgress {
    const fin = (x: number): number | null => (Number.isFinite(x) ? x : null);
    const sources: AssemblerProgress['sources'] = {};
    for (const [p, st] of this.sources) sources[p] = { sealed: fin(st.sealedThrough), idle: st.idle };
    return { complete: fin(this.completeBelow), next: fin(this.nextWindowStart), sources };
  }

  /**
   * Restores {@link progressSnapshot} into a fresh assembler, before the partials of the open
   * windows are re-read. Panes from the next window on are rebuilt from the re-read partials,
   * so nothing may complete them early: every source's bound is capped at that window's start
   * until the re-read progress markers (which follow those partials, as they did the first
   * time) raise it again.
   */
  restoreProgress(p: AssemblerProgress): void {
    const num = (x: number | null): number => x ?? Number.NEGATIVE_INFINITY;
    const next = num(p.next);
    this.nextWindowStart = Math.max(this.nextWindowStart, next);
    this.emittedData = Number.isFinite(next);
    this.completeBelow = Math.max(this.completeBelow, Math.min(num(p.complete), next));
    for (const [k, st] of Object.entries(p.sources)) this.sources.set(Number(k), { sealedThrough: Math.min(num(st.sealed), next), idle: st.idle });
  }

  /** Every pane before this bound is in the windows. */
  get completeThrough(): number {
    return this.completeBelow;
  }

  /** Panes waiting for other sources. */
  get pendingPanes(): number {
    return this.pending.size;
  }

  /** Whether every known source is idle. */
  get allSourcesIdle(): boolean {
    if (this.sources.size === 0) return false;
    for (const s of this.sources.values()) if (!s.idle) return false;
    return true;
  }

  /** Panes inside windows not yet closed. */
  get heldPanes(): number {
    return this.held.length;
  }

  /** Entities with panes inside open windows. */
  get trackedEntities(): number {
    return this.slides.asn.size + this.slides.ja4.size + this.slides.asn_ja4.size;
  }

  /** Takes a sealed pane partial from a source. Returns false if its pane was already complete (late). */
  addPartial(p: PanePartial): boolean {
    if (p.start < this.completeBelow || p.start < this.nextWindowStart) {
      for (const [, a] of p.entities.asn.entries()) this.stats.lateRequests += a.requests;
      return false;
    }
    let bySource = this.pending.get(p.start);
    if (!bySource) this.pending.set(p.start, (bySource = new Map()));
    const prior = bySource.get(p.source);
    if (!prior) bySource.set(p.source, p.entities);
    else for (const type of ENTITY_TYPES) for (const [e, a] of p.entities[type].entries()) prior[type].mergeIn(e, a);
    return true;
  }

  private emptyMaps(): Record<EntityType, BoundedEntityMap> {
    const cap = this.maxEntitiesPerPane;
    return {
      asn: new BoundedEntityMap('asn', cap, this.evictions),
      ja4: new BoundedEntityMap('ja4', cap, this.evictions),
      asn_ja4: new BoundedEntityMap('asn_ja4', cap, this.evictions),
    };
  }

  /**
   * Takes one entity's partial of a sealed pane (from the repartition topic). Returns false if
   * the pane was already complete (late). `owned`: nothing else holds `agg`, so it is kept, not copied.
   */
  addEntityPartial(pane: number, source: number, entityType: EntityType, entity: string, agg: EntityAggregate, owned = false): boolean {
    if (pane < this.completeBelow || pane < this.nextWindowStart) {
      if (entityType === 'asn') this.stats.lateRequests += agg.requests;
      return false;
    }
    let bySource = this.pending.get(pane);
    if (!bySource) this.pending.set(pane, (bySource = new Map()));
    let maps = bySource.get(source);
    if (!maps) bySource.set(source, (maps = this.emptyMaps()));
    maps[entityType].mergeIn(entity, agg, owned);
    return true;
  }

  /** A source's progress: every pane it will send starts at or after `sealedThrough`. */
  progress(source: number, sealedThrough: number, idle = false): void {
    const s = this.sources.get(source);
    if (!s) this.sources.set(source, { sealedThrough, idle });
    else {
      if (sealedThrough > s.sealedThrough) s.sealedThrough = sealedThrough;
      s.idle = idle;
    }
    this.advance();
  }

  /** The stage's watermark as a pane bound: min over active sources (max when all idle). */
  private bound(): number {
    let min = Number.POSITIVE_INFINITY;
    let any = false;
    for (const s of this.sources.values()) {
      if (s.idle) continue;
      any = true;
      if (s.sealedThrough < min) min = s.sealedThrough;
    }
    if (any) return min;
    let max = Number.NEGATIVE_INFINITY;
    for (const s of this.sources.values()) if (s.sealedThrough > max) max = s.sealedThrough;
    return max;
  }

  /** Completes the panes below the bound and closes the windows they finish. */
  private advance(): void {
    const bound = this.bound();
    if (!(bound > this.completeBelow)) return;
    for (const start of [...this.pending.keys()].filter((x) => x < bound).sort((a, b) => a - b)) this.complete(start);
    this.completeBelow = bound;
    this.closeWindowsEndingBy(bound);
  }

  /** Slides a pane every source has sealed into the windows of its entities, after closing the windows that end before it. */
  private complete(start: number): void {
    this.closeWindowsEndingBy(start);
    const bySource = this.pending.get(start) as Map<number, Record<EntityType, BoundedEntityMap>>;
    this.pending.delete(start);
    const sources = [...bySource.keys()].sort((a, b) => a - b);
    let maps = bySource.get(sources[0] as number) as Record<EntityType, BoundedEntityMap>;
    if (sources.length > 1) {
      maps = this.emptyMaps();
      for (const src of sources) {
        const part = bySource.get(src) as Record<EntityType, BoundedEntityMap>;
        for (const type of ENTITY_TYPES) for (const [e, a] of part[type].entries()) maps[type].mergeIn(e, a);
      }
    }
    // Partials arriving one entity at a time fill capped maps here, as records fill them in stage 1.
    for (const type of ENTITY_TYPES) maps[type].seal();
    for (const type of ENTITY_TYPES) {
      const slides = this.slides[type];
      for (const [e, a] of maps[type].entries()) {
        let sl = slides.get(e);
        if (!sl) {
          sl = new EntitySlide(this.sizeMs);
          slides.set(e, sl);
        }
        sl.push(start, a);
      }
    }
    this.held.push(start);
    this.completeBelow = Math.max(this.completeBelow, start + this.slideMs);
  }

  /** Closes, in order, every window that ends at or before `end`. */
  private closeWindowsEndingBy(end: number): void {
    while (this.nextWindowStart + this.sizeMs <= end) {
      const first = this.held[0];
      if (first === undefined) {
        // Nothing held: no window ending by `end` has data.
        this.skipTo(Math.max(this.nextWindowStart, end - this.sizeMs + this.slideMs));
        return;
      }
      // Runs of empty windows (before the data, or gaps in event time) are skipped in one step.
      const s = Math.max(this.nextWindowStart, first - this.sizeMs + this.slideMs);
      if (s + this.sizeMs > end) {
        this.skipTo(s);
        return;
      }
      this.skipTo(s);
      this.closeWindow(s);
    }
  }

  /**
   * Moves the next window to `next`. Windows skipped after the first one are emitted without
   * rows (up to {@link GAP_WINDOWS}), so that every entity's detector sees each window of a
   * gap as a zero, whichever partition of a scaled-out stage 2 holds it: a partition skips the
   * windows in which only other partitions had data.
   */
  private skipTo(next: number): void {
    if (!(next > this.nextWindowStart)) return;
    if (this.emittedData) {
      const stop = Math.min(next, this.nextWindowStart + GAP_WINDOWS * this.slideMs);
      for (let s = this.nextWindowStart; s < stop; s += this.slideMs) {
        this.ready.push({ windowStart: s, windowEnd: s + this.sizeMs, rows: [] });
      }
    }
    this.nextWindowStart = next;
  }

  /**
   * Completes every pending pane and closes every window that starts before the complete
   * bound, however far the watermark is: end of input, or an idle flush. Later panes are still
   * accepted, into the windows not yet closed.
   *
   * The windows closed depend on the bound alone, never on which entities this assembler
   * happens to hold: scaled out, every stage-2 partition sees the same progress markers and so
   * ends a flush at the same next window, which is what lets the rules stage decide the
   * windows (it waits for every partition to pass them). A partition holding nothing in the
   * last windows once stopped short of the others there, and the rules stage waited for it
   * for ever.
   */
  flush(): void {
    for (const start of [...this.pending.keys()].sort((a, b) => a - b)) this.complete(start);
    let end = Number.isFinite(this.completeBelow) ? this.completeBelow + this.sizeMs - this.slideMs : Number.NEGATIVE_INFINITY;
    const last = this.held[this.held.length - 1];
    if (last !== undefined) end = Math.max(end, last + this.sizeMs);
    if (Number.isFinite(end)) this.closeWindowsEndingBy(end);
    // Panes of the windows just closed are no longer needed by any open window: let them go now
    // rather than when the next window closes (it may be a long time after an idle flush).
    for (const slides of Object.values(this.slides)) {
      for (const [e, sl] of slides) {
        sl.evictBefore(this.nextWindowStart);
        if (sl.empty) slides.delete(e);
      }
    }
  }

  /** Whether {@link flush} would close anything: panes held or waiting, or windows before the complete bound still open. */
  get flushable(): boolean {
    return this.held.length + this.pending.size > 0 || (Number.isFinite(this.completeBelow) && this.nextWindowStart < this.completeBelow);
  }

  private closeWindow(start: number): void {
    const end = start + this.sizeMs;
    const rows: WindowAggregateRow[] = [];
    for (const type of ENTITY_TYPES) {
      const slides = this.slides[type];
      const entries: [string, EntityAggregate, number][] = [];
      for (const [e, sl] of slides) {
        sl.evictBefore(start);
        if (sl.empty) {
          slides.delete(e);
          continue;
        }
        const agg = sl.query(start);
        if (agg) entries.push([e, agg, sl.requestsOfNewest(end - this.slideMs)]);
      }
      entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      for (const [e, a, newest] of entries) rows.push(a.toRow(e, start, end, newest));
    }
    this.ready.push({ windowStart: start, windowEnd: end, rows });
    this.emittedData = true;
    this.stats.windowsClosed++;
    this.nextWindowStart = start + this.slideMs;
    while (this.held.length > 0 && (this.held[0] as number) < this.nextWindowStart) this.held.shift();
  }

  hasReady(): boolean {
    return this.ready.length > 0;
  }

  drain(): ClosedWindow[] {
    const out = this.ready;
    this.ready = [];
    return out;
  }
}
