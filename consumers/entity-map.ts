import { EntityAggregate, type EntityType } from './aggregates.js';
import { hashString } from './sketches.js';

/** Eviction counters shared by every bounded map of the window engine (exported as metrics). */
export interface EvictionStats {
  /** Entities evicted from a pane because it held more than the cap. */
  entities: number;
  /** Requests those entities carried, which no window counts. */
  requests: number;
}

interface Slot {
  agg: EntityAggregate;
  /** Ranking weight in the protected segment: requests plus the floor inherited at promotion. */
  weight: number;
  /** Seen more than once (or merged in with more than one request): in the protected segment. */
  protected: boolean;
}

/** Share of the cap the protected segment may fill; the rest is always left to newcomers. */
const PROTECTED_SHARE = 0.8;
/** Share of the cap evicted in one batch, so that the scan is amortised over many admissions. */
const BATCH_SHARE = 0.1;
/** Bits of the filter of keys evicted from probation (512 KB; ~0.05% false positives after 160,000 keys, 0.6% after 500,000). */
const GHOST_BITS = 1 << 22;
/** Probes per key in that filter. */
const GHOST_PROBES = 4;

/**
 * Bloom filter (Bloom 1970) of keys evicted from probation, with double hashing (Kirsch &
 * Mitzenmacher 2006) over the MurmurHash3 of consumers/sketches.ts. Written here rather than
 * taken from `bloom-filters`, whose structures hash with its own pure-JS xxhash64 (the cost
 * that made us reject its HyperLogLog, see consumers/sketches.ts), on a path that runs for
 * every new key of a flood. Two seeded MurmurHash3 calls and no allocation per key here.
 */
class GhostFilter {
  private readonly bits = new Uint32Array(GHOST_BITS >>> 5);

  add(key: string): void {
    const h1 = hashString(key, 0x9747b28c);
    const h2 = hashString(key, 0x85ebca6b) | 1;
    for (let i = 0; i < GHOST_PROBES; i++) {
      const b = (h1 + Math.imul(i, h2)) & (GHOST_BITS - 1);
      this.bits[b >>> 5]! |= 1 << (b & 31);
    }
  }

  has(key: string): boolean {
    const h1 = hashString(key, 0x9747b28c);
    const h2 = hashString(key, 0x85ebca6b) | 1;
    for (let i = 0; i < GHOST_PROBES; i++) {
      const b = (h1 + Math.imul(i, h2)) & (GHOST_BITS - 1);
      if ((this.bits[b >>> 5]! & (1 << (b & 31))) === 0) return false;
    }
    return true;
  }
}

/**
 * The aggregates of one entity type in one pane, at most `cap` entities, in two segments
 * (segmented LRU, Karedla, Love & Wherry 1994, as in the main region of W-TinyLFU, Einziger,
 * Friedman & Manes 2017):
 *
 * - **probation**: entities seen once. Beyond the cap the oldest are evicted first, in batches
 *   of a tenth of the cap. A flood of fresh one-request keys (a new JA4 or client IP per
 *   request) only ever churns this segment.
 * - **protected**: entities seen again while on probation, at most 80% of the cap. Beyond that
 *   the lightest are evicted, Space-Saving style (Metwally, Agrawal & El Abbadi, ICDT 2005): an
 *   entity promoted into it starts at the largest weight evicted from it so far, so a late
 *   heavy hitter can still displace light entities.
 *
 * Keys evicted from probation are remembered in a Bloom filter (allocated at the first such
 * eviction, 512 KB): one that comes back is admitted straight into the protected segment, so a
 * light benign entity whose requests are seconds apart loses only its first one to a flood,
 * while the flood's one-off keys never get past probation (but for the filter's false
 * positives, ~0.05% at 160,000 evicted keys per pane).
 *
 * When the pane is sealed, a map that had to evict reports only its protected segment
 * ({@link seal}): which one-off keys were still on probation then is an accident of arrival
 * order (the last few thousand of a flood), so they are evicted and counted like the others.
 * This is what keeps a flood of fresh fingerprints from reaching the windows, the detectors and
 * ClickHouse as a hundred thousand one-request rows per window, while the attack stays visible
 * in the aggregates of its ASN (requests, fingerprint diversity).
 *
 * Counts are exact for every entity held; what an evicted entity carried is counted in
 * {@link EvictionStats}. Under the cap nothing is ever evicted, no filter exists, and every
 * entity is reported. Cost: O(1) per request, plus O(cap) per batch of cap/10 evictions.
 */
export class BoundedEntityMap {
  private readonly slots = new Map<string, Slot>();
  private protectedCount = 0;
  /** Largest weight evicted from the protected segment. */
  private floor = 0;
  private ghosts: GhostFilter | null = null;
  private evicted = false;

  constructor(
    readonly type: EntityType,
    readonly cap: number,
    private readonly stats: EvictionStats,
  ) {}

  get size(): number {
    return this.slots.size;
  }

  /** The aggregate of `entity`, created if absent; `weight` is the requests about to be added to it. */
  take(entity: string, weight = 1): EntityAggregate {
    const slot = this.slots.get(entity);
    if (slot) {
      slot.weight += weight;
      if (!slot.protected) this.promote(entity, slot);
      return slot.agg;
    }
    return this.admit(entity, new EntityAggregate(this.type), weight);
  }

  /**
   * Merges a partial aggregate of `entity` (from another source partition) into this map.
   * `owned`: nothing else holds `agg` (freshly decoded), so it may be kept rather than copied.
   */
  mergeIn(entity: string, agg: EntityAggregate, owned = false): void {
    const slot = this.slots.get(entity);
    if (slot) {
      slot.agg.merge(agg);
      slot.weight += agg.requests;
      if (!slot.protected) this.promote(entity, slot);
      return;
    }
    this.admit(entity, owned ? agg : agg.clone(), agg.requests);
  }

  /** Whether the map has evicted anything (it was over its cap at some point). */
  get overflowed(): boolean {
    return this.evicted;
  }

  /**
   * Called once the pane is sealed: if the map had to evict, the entities still on probation
   * (seen once, and only still here because they came last) are evicted too, so that what is
   * reported does not depend on where a flood happened to stop. Idempotent.
   */
  seal(): void {
    if (!this.overflowed || this.protectedCount === this.slots.size) return;
    for (const [k, s] of this.slots) if (!s.protected) this.drop(k, s);
  }

  /** Entities and their aggregates, in insertion order. */
  *entries(): IterableIterator<[string, EntityAggregate]> {
    for (const [k, s] of this.slots) yield [k, s.agg];
  }

  private admit(entity: string, agg: EntityAggregate, weight: number): EntityAggregate {
    const slot: Slot = { agg, weight, protected: false };
    this.slots.set(entity, slot);
    // A partial that already holds several requests, or a key seen before it was evicted, is not a one-off.
    if (agg.requests > 1 || weight > 1 || this.ghosts?.has(entity)) this.promote(entity, slot);
    if (this.slots.size > this.cap) this.evictProbation(entity);
    return agg;
  }

  private promote(entity: string, slot: Slot): void {
    slot.protected = true;
    slot.weight += this.floor;
    this.protectedCount++;
    if (this.protectedCount > Math.floor(this.cap * PROTECTED_SHARE)) this.evictProtected(entity);
  }

  private drop(key: string, slot: Slot): void {
    this.slots.delete(key);
    this.evicted = true;
    if (slot.protected) this.protectedCount--;
    this.stats.entities++;
    this.stats.requests += slot.agg.requests;
  }

  /**
   * Evicts the oldest probation entries, a tenth of the cap at once (the entry just admitted is
   * exempt). The protected segment holds at most 80% of the cap, so there are always enough.
   */
  private evictProbation(keep: string): void {
    let n = this.slots.size - Math.floor(this.cap * (1 - BATCH_SHARE));
    for (const [k, s] of this.slots) {
      if (n <= 0) break;
      if (s.protected || k === keep) continue;
      this.drop(k, s);
      (this.ghosts ??= new GhostFilter()).add(k);
      n--;
    }
    // Only reachable with a cap so small that rounding leaves no probation room.
    if (n > 0) this.evictProtected(keep, n);
  }

  /**
   * Evicts the lightest protected entries down to 70% of the cap (ties: the oldest first),
   * sparing `keep`, and raises the floor that later promotions start from.
   */
  private evictProtected(keep: string, atLeast = 0): void {
    const n = Math.max(atLeast, this.protectedCount - Math.floor(this.cap * (PROTECTED_SHARE - BATCH_SHARE)));
    const weights: number[] = [];
    for (const [k, s] of this.slots) if (s.protected && k !== keep) weights.push(s.weight);
    if (weights.length === 0 || n <= 0) return;
    weights.sort((a, b) => a - b);
    const threshold = weights[Math.min(n, weights.length) - 1] as number;
    let equalQuota = n;
    for (const w of weights) if (w < threshold) equalQuota--;
    for (const [k, s] of this.slots) {
      if (!s.protected || k === keep || s.weight > threshold) continue;
      if (s.weight === threshold) {
        if (equalQuota <= 0) continue;
        equalQuota--;
      }
      this.drop(k, s);
    }
    if (threshold > this.floor) this.floor = threshold;
  }
}
