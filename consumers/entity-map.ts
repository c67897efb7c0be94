import { EntityAggregate, type EntityType } from './aggregates.js';

/** Eviction counters shared by every bounded map of the window engine (exported as metrics). */
export interface EvictionStats {
  /** Entities evicted from a pane because it held more than the cap. */
  entities: number;
  /** Requests those entities carried, which no window counts. */
  requests: number;
}

interface Slot {
  agg: EntityAggregate;
  /** Space-Saving weight: requests seen plus the floor inherited when admitted. */
  weight: number;
}

/**
 * The aggregates of one entity type in one pane, at most `cap` entities.
 *
 * Beyond the cap the lightest tenth is evicted in one pass, Space-Saving style (Metwally,
 * Agrawal & El Abbadi, ICDT 2005): a newly admitted entity starts at the largest weight
 * evicted so far, so a heavy hitter cannot be pushed out by a flood of fresh one-request
 * keys (a fresh JA4 or client IP per request). An entity with more than about
 * 1/(0.9·cap) of the pane's requests is never evicted. Batching the eviction keeps the cost
 * O(log cap) amortised per admission, and zero when under the cap.
 */
export class BoundedEntityMap {
  private readonly slots = new Map<string, Slot>();
  private floor = 0;

  constructor(
    readonly type: EntityType,
    readonly cap: number,
    private readonly stats: EvictionStats,
  ) {}

  get size(): number {
    return this.slots.size;
  }

  /** The aggregate of `entity`, created if absent; its weight grows by `weight` (requests about to be added). */
  take(entity: string, weight = 1): EntityAggregate {
    let slot = this.slots.get(entity);
    if (slot) {
      slot.weight += weight;
      return slot.agg;
    }
    slot = { agg: new EntityAggregate(this.type), weight: this.floor + weight };
    this.slots.set(entity, slot);
    if (this.slots.size > this.cap) this.evict(entity);
    return slot.agg;
  }

  /** Merges a partial aggregate of `entity` (from another source partition) into this map. */
  mergeIn(entity: string, agg: EntityAggregate): void {
    const slot = this.slots.get(entity);
    if (slot) {
      slot.agg.merge(agg);
      slot.weight += agg.requests;
      return;
    }
    this.slots.set(entity, { agg: agg.clone(), weight: this.floor + agg.requests });
    if (this.slots.size > this.cap) this.evict(entity);
  }

  /** Entities and their aggregates, in insertion order. */
  *entries(): IterableIterator<[string, EntityAggregate]> {
    for (const [k, s] of this.slots) yield [k, s.agg];
  }

  /**
   * Evicts the lightest entries down to 90% of the cap. The entry just admitted is exempt, as
   * in Space-Saving, where a new item always replaces the minimum.
   */
  private evict(keep: string): void {
    const n = this.slots.size - Math.floor(this.cap * 0.9);
    const weights: number[] = [];
    for (const [k, s] of this.slots) if (k !== keep) weights.push(s.weight);
    weights.sort((a, b) => a - b);
    const threshold = weights[n - 1] as number;
    let equalQuota = n;
    for (const w of weights) if (w < threshold) equalQuota--;
    for (const [k, s] of this.slots) {
      if (k === keep || s.weight > threshold) continue;
      if (s.weight === threshold) {
        if (equalQuota === 0) continue;
        equalQuota--;
      }
      this.slots.delete(k);
      this.stats.entities++;
      this.stats.requests += s.agg.requests;
    }
    if (threshold > this.floor) this.floor = threshold;
  }
}
