import type { RequestLog } from '../schemas/index.js';
import { pairKey, type EntityType, type RecordDigest } from './aggregates.js';
import { BoundedEntityMap, type EvictionStats } from './entity-map.js';

/** The partial aggregates of every entity over one pane of one source partition. */
export interface PanePartial {
  /** Pane start, epoch ms (slide-aligned). */
  start: number;
  /** Input partition the records came from. */
  source: number;
  /** Smallest input offset in the pane (-1 when offsets do not matter, as in replay). */
  minOffset: number;
  entities: Record<EntityType, BoundedEntityMap>;
}

/** What became of a record offered to the windows. */
export type AddOutcome = 'accepted' | 'late' | 'replayed';

/**
 * Stage 1 of the window engine: pre-aggregates one input partition's records into panes (one
 * per slide of event time), Kafka Streams style: state and stream time are per partition.
 *
 * The partition's watermark is the largest event time it has delivered. A pane
 * [p, p + slide) is sealed once that watermark reaches p + slide + allowed lateness; a
 * record whose pane is sealed is late. Lateness is decided per pane, so a record counts in
 * every window that contains it or in none, never in some of them. Per-event cost is one
 * update of three aggregates, whatever size / slide is.
 */
export class PaneBuilder {
  private readonly open = new Map<number, PanePartial>();
  /** Every pane starting before this is sealed and handed on. */
  private sealedBelow = Number.NEGATIVE_INFINITY;
  /** Largest event time delivered, epoch ms. */
  watermark = Number.NEGATIVE_INFINITY;

  constructor(
    readonly source: number,
    private readonly slideMs: number,
    private readonly latenessMs: number,
    private readonly maxEntitiesPerPane: number,
    private readonly evictions: EvictionStats,
  ) {}

  /** Every pane before this bound is sealed (slide-aligned; -Infinity before any). */
  get sealedThrough(): number {
    return this.sealedBelow;
  }

  /**
   * Restores the progress checkpointed with the committed offset: panes before `sealedThrough`
   * were handed on already, and `watermark` was the largest event time seen.
   */
  restore(sealedThrough: number, watermark: number): void {
    if (sealedThrough > this.sealedBelow) this.sealedBelow = sealedThrough;
    if (watermark > this.watermark) this.watermark = watermark;
  }

  /** Panes held open. */
  get openPanes(): number {
    return this.open.size;
  }

  /** Smallest input offset still held in an open pane, or undefined. */
  minOpenOffset(): number | undefined {
    let min: number | undefined;
    for (const p of this.open.values()) if (p.minOffset >= 0 && (min === undefined || p.minOffset < min)) min = p.minOffset;
    return min;
  }

  /** The slide-aligned start of the pane holding event time t. */
  paneOf(t: number): number {
    return t - (((t % this.slideMs) + this.slideMs) % this.slideMs);
  }

  /** Adds a record (already hashed); returns false if its pane is already sealed (late). */
  add(r: RequestLog, d: RecordDigest, offset: number): boolean {
    const start = this.paneOf(r.timestamp);
    if (r.timestamp > this.watermark) this.watermark = r.timestamp;
    if (start < this.sealedBelow) return false;
    let pane = this.open.get(start);
    if (!pane) {
      const cap = this.maxEntitiesPerPane;
      pane = {
        start,
        source: this.source,
        minOffset: offset,
        entities: {
          asn: new BoundedEntityMap('asn', cap, this.evictions),
          ja4: new BoundedEntityMap('ja4', cap, this.evictions),
          asn_ja4: new BoundedEntityMap('asn_ja4', cap, this.evictions),
        },
      };
      this.open.set(start, pane);
    } else if (offset >= 0 && (pane.minOffset < 0 || offset < pane.minOffset)) {
      pane.minOffset = offset;
    }
    pane.entities.asn.take(d.asn).add(r, d);
    if (r.ja4 !== null) {
      pane.entities.ja4.take(r.ja4).add(r, d);
      pane.entities.asn_ja4.take(pairKey(d.asn, r.ja4)).add(r, d);
    }
    return true;
  }

  /** The bound below which the watermark seals panes now. */
  private bound(): number {
    const b = Math.floor((this.watermark - this.latenessMs) / this.slideMs) * this.slideMs;
    return Number.isFinite(b) ? b : Number.NEGATIVE_INFINITY;
  }

  /** Whether {@link seal} would hand on anything new. */
  canSeal(): boolean {
    return this.bound() > this.sealedBelow;
  }

  /**
   * Seals the panes the watermark has passed (or, with `all`, every open pane: end of input
   * or an idle flush) and returns them oldest first. The sealed bound never goes back.
   */
  seal(all = false): PanePartial[] {
    let bound = this.bound();
    if (all) for (const p of this.open.keys()) bound = Math.max(bound, p + this.slideMs);
    if (!(bound > this.sealedBelow)) return [];
    this.sealedBelow = bound;
    const out: PanePartial[] = [];
    for (const [start, pane] of this.open) {
      if (start < bound) {
        for (const m of Object.values(pane.entities)) m.seal();
        out.push(pane);
        this.open.delete(start);
      }
    }
    return out.sort((a, b) => a.start - b.start);
  }
}
