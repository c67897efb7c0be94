import { ENTITY_TYPES, EntityAggregate, type EntityType, type WindowAggregateRow, type WindowTops } from './aggregates.js';
import { BoundedEntityMap, type EvictionStats } from './entity-map.js';
import type { PanePartial } from './pane-builder.js';

/** A window that the watermark has closed, with one aggregate row per entity, sorted by type then entity. */
export interface ClosedWindow {
  windowStart: number;
  windowEnd: number;
  rows: WindowAggregateRow[];
}

/** Most empty windows emitted for one gap in the data: more than any detector's history, after which every entity is quiet. */
const GAP_WINDOWS = 1_000;

interface Item {
  pane: number;
  /** The pane's own aggregate. */
  agg: EntityAggregate;
  /** Front items: the merge of this pane and every newer front pane. */
  suffix?: EntityAggregate;
}

/**
 * One entity's panes inside the open windows, as a two-stacks sliding aggregation (the
 * "Two-Stacks" of Tangwongsan, Hirzel & Schneider, "In-order sliding-window aggregation in
 * worst-case constant time", VLDB J. 2021). Panes are pushed in order and evicted oldest
 * first; a window's aggregate costs O(1) merges amortised, however many panes it spans.
 * A naive merge of every pane per window costs size/slide merges instead: 60 at a 1 s slide.
 */
class EntitySlide {
  /** Newest last; `backAgg` is the merge of all of them. */
  private back: Item[] = [];
  private backAgg: EntityAggregate | null = null;
  private backOwned = false;
  /** Oldest last; each holds the merge of itself and every newer front item. */
  private front: Item[] = [];

  get empty(): boolean {
    return this.back.length === 0 && this.front.length === 0;
  }

  push(pane: number, agg: EntityAggregate): void {
    this.back.push({ pane, agg });
    if (!this.backAgg) {
      this.backAgg = agg; // shared until something is merged into it
      this.backOwned = false;
    } else {
      if (!this.backOwned) {
        this.backAgg = this.backAgg.clone();
        this.backOwned = true;
      }
      this.backAgg.merge(agg);
    }
  }

  /** Drops panes that start before `start`. */
  evictBefore(start: number): void {
    for (;;) {
      if (this.front.length === 0) {
        if (this.back.length === 0 || (this.back[0] as Item).pane >= start) return;
        this.flip();
      }
      const oldest = this.front[this.front.length - 1] as Item;
      if (oldest.pane >= start) return;
      this.front.pop();
    }
  }

  /** Moves the back stack to the front, computing suffix merges newest to oldest. */
  private flip(): void {
    let acc: EntityAggregate | null = null;
    for (let i = this.back.length - 1; i >= 0; i--) {
      const it = this.back[i] as Item;
      if (acc === null) acc = it.agg;
      else {
        const merged = it.agg.clone();
        merged.merge(acc);
        acc = merged;
      }
      this.front.push({ pane: it.pane, agg: it.agg, suffix: acc });
    }
    this.back = [];
    this.backAgg = null;
    this.backOwned = false;
  }

  /**
   * The heavy-hitter summaries over every pane held, merged oldest to newest. Space-Saving
   * merges are not associative (ties, evictions), and the two-stacks association depends on
   * when the stacks last flipped, which a restart changes; a left fold in pane order makes
   * top paths and requests per IP a function of the panes alone. Small summaries merge
   * without ranking, so this costs little.
   */
  foldTops(): WindowTops | null {
    const items: Item[] = [];
    for (let i = this.front.length - 1; i >= 0; i--) items.push(this.front[i] as Item);
    items.push(...this.back);
    const first = items[0];
    if (!first) return null;
    if (items.length === 1) return { paths: first.agg.topPaths, ips: first.agg.topIps };
    const paths = first.agg.topPaths.clone();
    const ips = first.agg.topIps.clone();
    for (let i = 1; i < items.length; i++) {
      paths.merge((items[i] as Item).agg.topPaths);
      ips.merge((items[i] as Item).agg.topIps);
    }
    return { paths, ips };
  }

  /** The aggregate over every pane held; do not mutate it. */
  query(): EntityAggregate | null {
    const f = this.front.length > 0 ? ((this.front[this.front.length - 1] as Item).suffix as EntityAggregate) : null;
    if (!f) return this.backAgg;
    if (!this.backAgg) return f;
    const q = f.clone();
    q.merge(this.backAgg);
    return q;
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
   * the pane was already complete (late).
   */
  addEntityPartial(pane: number, source: number, entityType: EntityType, entity: string, agg: EntityAggregate): boolean {
    if (pane < this.completeBelow || pane < this.nextWindowStart) {
      if (entityType === 'asn') this.stats.lateRequests += agg.requests;
      return false;
    }
    let bySource = this.pending.get(pane);
    if (!bySource) this.pending.set(pane, (bySource = new Map()));
    let maps = bySource.get(source);
    if (!maps) bySource.set(source, (maps = this.emptyMaps()));
    maps[entityType].mergeIn(entity, agg);
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
          sl = new EntitySlide();
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
   * Completes every pending pane and closes every window that holds data, however far the
   * watermark is: end of input, or an idle flush. Later panes are still accepted, into the
   * windows not yet closed.
   */
  flush(): void {
    for (const start of [...this.pending.keys()].sort((a, b) => a - b)) this.complete(start);
    const last = this.held[this.held.length - 1];
    if (last !== undefined) this.closeWindowsEndingBy(last + this.sizeMs);
  }

  private closeWindow(start: number): void {
    const end = start + this.sizeMs;
    const rows: WindowAggregateRow[] = [];
    for (const type of ENTITY_TYPES) {
      const slides = this.slides[type];
      const entries: [string, EntityAggregate, WindowTops | null][] = [];
      for (const [e, sl] of slides) {
        sl.evictBefore(start);
        if (sl.empty) {
          slides.delete(e);
          continue;
        }
        const agg = sl.query();
        if (agg) entries.push([e, agg, sl.foldTops()]);
      }
      entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      for (const [e, a, tops] of entries) rows.push(a.toRow(e, start, end, tops ?? undefined));
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
