/**
 * The naive sliding window, kept only as the benchmark's point of comparison for
 * consumers/windows.ts: every record is added to each of the size / slide windows that contain
 * it, so per-event cost grows with size / slide (60 aggregate updates per entity at a 1 s
 * slide), where the pane engine does one.
 *
 * It computes the same thing as {@link SlidingWindows} on one partition: the same aggregates
 * ({@link EntityAggregate}, {@link digestRecord}), the same lateness rule (a record whose pane
 * [p, p + slide) ended at least `allowed_lateness` before the largest event time seen before it
 * is late and counts in no window), the same closing rule (a window [s, s + size) closes when
 * the largest event time reaches s + size + allowed lateness), and the same output shape (rows
 * sorted by type then entity, windows oldest first). It never emits a window without rows (the
 * pane engine does, inside gaps of event time). Entities are not capped: it is meant for
 * benign streams, not for the cardinality attack.
 */
import { ENTITY_TYPES, EntityAggregate, digestRecord, pairKey, type EntityType, type WindowAggregateRow } from '../consumers/aggregates.js';
import type { ClosedWindow } from '../consumers/windows.js';
import type { RequestLog } from '../schemas/index.js';

interface OpenWindow {
  start: number;
  entities: Record<EntityType, Map<string, EntityAggregate>>;
  /** Requests of each entity in the window's last slide. */
  newest: Record<EntityType, Map<string, number>>;
}

function countNewest(map: Map<string, number>, entity: string): void {
  map.set(entity, (map.get(entity) ?? 0) + 1);
}

/** Counters of {@link NaiveWindows}, as in `SlidingWindows.stats`. */
export interface NaiveWindowStats {
  accepted: number;
  late: number;
  windowsClosed: number;
}

function take(map: Map<string, EntityAggregate>, type: EntityType, entity: string): EntityAggregate {
  let a = map.get(entity);
  if (!a) {
    a = new EntityAggregate(type);
    map.set(entity, a);
  }
  return a;
}

/** Per-window sliding windows of `sizeMs` advancing by `slideMs` (ms; size a multiple of slide), single partition. */
export class NaiveWindows {
  /** Open windows by start, created on the first record that falls in them. */
  private readonly open = new Map<number, OpenWindow>();
  /** Largest event time seen, epoch ms. */
  private watermark = Number.NEGATIVE_INFINITY;
  /** Panes starting before this are sealed (their records are late), and windows ending by it are closed. */
  private sealedBelow = Number.NEGATIVE_INFINITY;
  private ready: ClosedWindow[] = [];
  readonly stats: NaiveWindowStats = { accepted: 0, late: 0, windowsClosed: 0 };

  constructor(
    readonly sizeMs: number,
    readonly slideMs: number,
    readonly latenessMs: number,
  ) {
    if (!(sizeMs > 0 && slideMs > 0 && sizeMs % slideMs === 0)) throw new RangeError(`size_ms (${sizeMs}) must be a positive multiple of slide_ms (${slideMs})`);
  }

  /** Windows held open. */
  get openWindows(): number {
    return this.open.size;
  }

  /** Adds a record to every open window that contains it, or counts it late. */
  add(r: RequestLog): 'accepted' | 'late' {
    const t = r.timestamp;
    const slide = this.slideMs;
    const pane = t - (((t % slide) + slide) % slide);
    if (t > this.watermark) this.watermark = t;
    let outcome: 'accepted' | 'late';
    if (pane < this.sealedBelow) {
      this.stats.late++;
      outcome = 'late';
    } else {
      const d = digestRecord(r);
      const ja4 = r.ja4;
      const pair = ja4 === null ? null : pairKey(d.asn, ja4);
      for (let s = pane; s > t - this.sizeMs; s -= slide) {
        let w = this.open.get(s);
        if (!w) {
          w = { start: s, entities: { asn: new Map(), ja4: new Map(), asn_ja4: new Map() }, newest: { asn: new Map(), ja4: new Map(), asn_ja4: new Map() } };
          this.open.set(s, w);
        }
        const newest = pane === s + this.sizeMs - slide;
        take(w.entities.asn, 'asn', d.asn).add(r, d);
        if (newest) countNewest(w.newest.asn, d.asn);
        if (ja4 !== null && pair !== null) {
          take(w.entities.ja4, 'ja4', ja4).add(r, d);
          take(w.entities.asn_ja4, 'asn_ja4', pair).add(r, d);
          if (newest) {
            countNewest(w.newest.ja4, ja4);
            countNewest(w.newest.asn_ja4, pair);
          }
        }
      }
      this.stats.accepted++;
      outcome = 'accepted';
    }
    const bound = Math.floor((this.watermark - this.latenessMs) / slide) * slide;
    if (bound > this.sealedBelow) {
      this.sealedBelow = bound;
      this.closeEndingBy(bound);
    }
    return outcome;
  }

  private closeEndingBy(end: number): void {
    const due: number[] = [];
    for (const s of this.open.keys()) if (s + this.sizeMs <= end) due.push(s);
    due.sort((a, b) => a - b);
    for (const s of due) this.close(s);
  }

  private close(start: number): void {
    const w = this.open.get(start) as OpenWindow;
    this.open.delete(start);
    const end = start + this.sizeMs;
    const rows: WindowAggregateRow[] = [];
    for (const type of ENTITY_TYPES) {
      const entries = [...w.entities[type]];
      entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      for (const [e, a] of entries) rows.push(a.toRow(e, start, end, w.newest[type].get(e) ?? 0));
    }
    this.ready.push({ windowStart: start, windowEnd: end, rows });
    this.stats.windowsClosed++;
  }

  /** Takes the windows closed so far, oldest first. */
  drain(): ClosedWindow[] {
    const out = this.ready;
    this.ready = [];
    return out;
  }

  /** End of input: closes every open window and returns all pending windows. */
  closeAll(): ClosedWindow[] {
    this.closeEndingBy(Number.POSITIVE_INFINITY);
    return this.drain();
  }
}
