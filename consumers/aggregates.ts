import type { RequestLog } from '../schemas/index.js';
import { DistinctCounter, SpaceSaving, hashString, type DistinctCounterJSON, type DistinctCounterWire, type SpaceSavingJSON, type SpaceSavingWire } from './sketches.js';

/** The entity types of CONTRACTS §2. */
export type EntityType = 'asn' | 'ja4' | 'asn_ja4';
/** All entity types, in output order. */
export const ENTITY_TYPES: readonly EntityType[] = ['asn', 'ja4', 'asn_ja4'];

/** The entity string of the `asn_ja4` pair (CONTRACTS §2: `<asn>|<ja4>`). */
export function pairKey(asn: number | string, ja4: string): string {
  return `${asn}|${ja4}`;
}

/** The ASN (as written) and the JA4 of a {@link pairKey} (the ASN holds no `|`; a JA4 may). */
export function splitPair(entity: string): [asn: string, ja4: string] {
  const bar = entity.indexOf('|');
  return [entity.slice(0, bar), entity.slice(bar + 1)];
}

const STATIC_ASSET = /\.(?:js|mjs|css|png|jpe?g|gif|svg|webp|avif|ico|woff2?|ttf|map)(?:\?|$)/i;

/** Whether a request path is a static asset (script, style, image, font). Computed once per record. */
export function isStaticAsset(path: string): boolean {
  return STATIC_ASSET.test(path);
}

/** Capacity of the heavy-hitter summary of paths per entity and pane. */
const TOP_PATH_CAPACITY = 16;
/** Capacity of the heavy-hitter summary of client IPs (for requests_per_ip_max). */
const TOP_IP_CAPACITY = 16;
/**
 * Longest path kept as text in a top-paths summary, characters; longer ones are cut and marked
 * with "…" (the count still goes to the full path's hash). A hostile 10 MB path would otherwise
 * travel in every repartition message, changelog record and ClickHouse row of its entity.
 */
export const MAX_PATH_CHARS = 1024;

/** The text a top-paths summary keeps for `path`. */
export function shownPath(path: string): string {
  return path.length > MAX_PATH_CHARS ? `${path.slice(0, MAX_PATH_CHARS)}…` : path;
}

/** How many top paths a window row reports. */
export const TOP_PATHS_REPORTED = 5;

/**
 * What every entity aggregate of one record needs, computed once per record and shared by the
 * asn, ja4 and pair aggregates: the 32-bit hashes of the distinct-counted fields.
 */
export interface RecordDigest {
  asn: string;
  ip: number;
  path: number;
  userAgent: number;
  /** Hash of the fingerprint ("" for plain HTTP): fingerprint diversity of an ASN. */
  ja4: number;
  /** Hash of the ASN's decimal string: ASN diversity of a fingerprint. */
  asnHash: number;
  staticAsset: boolean;
}

/** Hashes a record's distinct-counted fields once. */
export function digestRecord(r: RequestLog): RecordDigest {
  const asn = String(r.asn);
  return {
    asn,
    ip: hashString(r.client_ip),
    path: hashString(r.path),
    userAgent: hashString(r.user_agent),
    ja4: hashString(r.ja4 ?? ''),
    asnHash: hashString(asn),
    staticAsset: isStaticAsset(r.path),
  };
}

/**
 * The aggregate of one entity over a pane (one slide of event time) or, merged, over a
 * window. Every part is mergeable, so windows are built from panes: counters add, distinct
 * counts are HyperLogLog sketches (exact up to 3,072 items, then about 0.8% standard
 * error), top paths and requests per IP come from Space-Saving summaries.
 */
export class EntityAggregate {
  requests = 0;
  status2xx = 0;
  status3xx = 0;
  status4xx = 0;
  status5xx = 0;
  status401 = 0;
  status403 = 0;
  post = 0;
  staticAssets = 0;
  bytes = 0;
  challengeIssued = 0;
  challengePassed = 0;
  challengeFailed = 0;
  http1 = 0;
  http2 = 0;
  http3 = 0;
  ips: DistinctCounter;
  paths: DistinctCounter;
  userAgents: DistinctCounter;
  /** asn entities: distinct fingerprints; ja4 entities: distinct ASNs; pairs: null. */
  diversity: DistinctCounter | null;
  topPaths: SpaceSaving;
  topIps: SpaceSaving;

  /** An empty aggregate for an entity of `type`. */
  constructor(readonly type: EntityType, copyOf?: EntityAggregate) {
    if (copyOf) {
      this.ips = copyOf.ips.clone();
      this.paths = copyOf.paths.clone();
      this.userAgents = copyOf.userAgents.clone();
      this.diversity = copyOf.diversity?.clone() ?? null;
      this.topPaths = copyOf.topPaths.clone();
      this.topIps = copyOf.topIps.clone();
      this.addCounters(copyOf);
    } else {
      this.ips = new DistinctCounter();
      this.paths = new DistinctCounter();
      this.userAgents = new DistinctCounter();
      this.diversity = type === 'asn_ja4' ? null : new DistinctCounter();
      this.topPaths = new SpaceSaving(TOP_PATH_CAPACITY);
      this.topIps = new SpaceSaving(TOP_IP_CAPACITY);
    }
  }

  /** Adds one request, with its {@link digestRecord}. */
  add(r: RequestLog, d: RecordDigest): void {
    this.requests++;
    this.ips.add(d.ip);
    this.paths.add(d.path);
    this.userAgents.add(d.userAgent);
    if (this.diversity) this.diversity.add(this.type === 'asn' ? d.ja4 : d.asnHash);
    // A cut path is counted under the text kept, so two long paths that share it are one key
    // (a summary holding the same key twice could not be decoded after the repartition topic).
    const shown = shownPath(r.path);
    this.topPaths.add(shown, 1, shown === r.path ? d.path : hashString(shown));
    this.topIps.add(r.client_ip, 1, d.ip);
    const s = r.status;
    if (s >= 200 && s < 300) this.status2xx++;
    else if (s >= 300 && s < 400) this.status3xx++;
    else if (s >= 400 && s < 500) {
      this.status4xx++;
      if (s === 401) this.status401++;
      else if (s === 403) this.status403++;
    } else if (s >= 500 && s < 600) this.status5xx++;
    if (r.method === 'POST') this.post++;
    if (d.staticAsset) this.staticAssets++;
    this.bytes += r.response_bytes;
    if (r.challenge === 'ISSUED') this.challengeIssued++;
    else if (r.challenge === 'PASSED') this.challengePassed++;
    else if (r.challenge === 'FAILED') this.challengeFailed++;
    if (r.protocol === 'HTTP/2') this.http2++;
    else if (r.protocol === 'HTTP/3') this.http3++;
    else this.http1++;
  }

  /** An independent copy. */
  clone(): EntityAggregate {
    return new EntityAggregate(this.type, this);
  }

  /** Adds another partial aggregate of the same entity into this one; `o` is not changed. */
  merge(o: EntityAggregate): void {
    this.ips.merge(o.ips);
    this.paths.merge(o.paths);
    this.userAgents.merge(o.userAgents);
    if (this.diversity && o.diversity) this.diversity.merge(o.diversity);
    this.topPaths.merge(o.topPaths);
    this.topIps.merge(o.topIps);
    this.addCounters(o);
  }

  private addCounters(o: EntityAggregate): void {
    this.requests += o.requests;
    this.status2xx += o.status2xx;
    this.status3xx += o.status3xx;
    this.status4xx += o.status4xx;
    this.status5xx += o.status5xx;
    this.status401 += o.status401;
    this.status403 += o.status403;
    this.post += o.post;
    this.staticAssets += o.staticAssets;
    this.bytes += o.bytes;
    this.challengeIssued += o.challengeIssued;
    this.challengePassed += o.challengePassed;
    this.challengeFailed += o.challengeFailed;
    this.http1 += o.http1;
    this.http2 += o.http2;
    this.http3 += o.http3;
  }

  /** JSON-safe form for the repartition topic and checkpoints. */
  toJSON(): EntityAggregateJSON {
    return {
      v: 1,
      type: this.type,
      counters: COUNTERS.map((k) => this[k]),
      ips: this.ips.toJSON(),
      paths: this.paths.toJSON(),
      user_agents: this.userAgents.toJSON(),
      diversity: this.diversity?.toJSON() ?? null,
      top_paths: this.topPaths.toJSON(),
      top_ips: this.topIps.toJSON(),
    };
  }

  /** Rebuilds an aggregate from {@link toJSON}; throws a TypeError naming what is wrong. */
  static fromJSON(v: unknown): EntityAggregate {
    if (typeof v !== 'object' || v === null) throw new TypeError('EntityAggregate: expected an object');
    const o = v as Partial<Record<keyof EntityAggregateJSON, unknown>>;
    if (o.v !== 1) throw new TypeError(`EntityAggregate: unsupported version 'v': ${JSON.stringify(o.v)}`);
    if (o.type !== 'asn' && o.type !== 'ja4' && o.type !== 'asn_ja4') throw new TypeError(`EntityAggregate: bad 'type' ${JSON.stringify(o.type)}`);
    const counters = o.counters;
    if (!Array.isArray(counters) || counters.length !== COUNTERS.length || !counters.every((c) => Number.isSafeInteger(c) && (c as number) >= 0)) {
      throw new TypeError(`EntityAggregate: 'counters' must be ${COUNTERS.length} non-negative integers`);
    }
    const a = new EntityAggregate(o.type);
    COUNTERS.forEach((k, i) => (a[k] = counters[i] as number));
    a.ips = DistinctCounter.fromJSON(o.ips);
    a.paths = DistinctCounter.fromJSON(o.paths);
    a.userAgents = DistinctCounter.fromJSON(o.user_agents);
    if (o.type === 'asn_ja4') {
      if (o.diversity !== null) throw new TypeError("EntityAggregate: 'diversity' must be null for asn_ja4");
    } else a.diversity = DistinctCounter.fromJSON(o.diversity);
    a.topPaths = SpaceSaving.fromJSON(o.top_paths);
    a.topIps = SpaceSaving.fromJSON(o.top_ips);
    return a;
  }

  /** The `EntityPartial` fields of schemas/pane-bundle.avsc (the repartition topic's binary form), without the entity. */
  toWire(): EntityAggregateWire {
    return {
      counters: COUNTERS.map((k) => this[k]),
      ips: this.ips.toWire(),
      paths: this.paths.toWire(),
      user_agents: this.userAgents.toWire(),
      diversity: this.diversity?.toWire() ?? null,
      top_paths: this.topPaths.toWire(),
      top_ips: this.topIps.toWire(),
    };
  }

  /** Rebuilds an aggregate of `type` from {@link toWire}; throws a TypeError naming what is wrong. */
  static fromWire(type: EntityType, w: EntityAggregateWire): EntityAggregate {
    const counters = w.counters;
    if (counters.length !== COUNTERS.length || !counters.every((c) => Number.isSafeInteger(c) && c >= 0)) {
      throw new TypeError(`EntityAggregate: 'counters' must be ${COUNTERS.length} non-negative integers`);
    }
    const a = new EntityAggregate(type);
    for (let i = 0; i < COUNTERS.length; i++) a[COUNTERS[i]!] = counters[i]!;
    a.ips = DistinctCounter.fromWire(w.ips);
    a.paths = DistinctCounter.fromWire(w.paths);
    a.userAgents = DistinctCounter.fromWire(w.user_agents);
    if (type === 'asn_ja4') {
      if (w.diversity !== null) throw new TypeError("EntityAggregate: 'diversity' must be null for asn_ja4");
    } else {
      if (w.diversity === null) throw new TypeError(`EntityAggregate: 'diversity' must be set for ${type}`);
      a.diversity = DistinctCounter.fromWire(w.diversity);
    }
    a.topPaths = SpaceSaving.fromWire(w.top_paths);
    a.topIps = SpaceSaving.fromWire(w.top_ips);
    return a;
  }

  /** Approximate heap bytes (memory accounting). */
  byteSize(): number {
    return (
      200 +
      this.ips.byteSize() +
      this.paths.byteSize() +
      this.userAgents.byteSize() +
      (this.diversity?.byteSize() ?? 0) +
      this.topPaths.byteSize() +
      this.topIps.byteSize()
    );
  }

  /**
   * The wire row of CONTRACTS §5 (`--aggregates`) and ClickHouse `window_aggregates`.
   * `lastSlideRequests`: requests in the window's newest pane (its last slide).
   */
  toRow(entity: string, windowStart: number, windowEnd: number, lastSlideRequests: number): WindowAggregateRow {
    // Never more distinct IPs than requests (a sketch estimate can overshoot by its error).
    const uniqueIps = Math.max(1, Math.min(this.ips.estimate(), this.requests));
    // The largest guaranteed count (count − error): a lower bound within N/16 of the true maximum.
    const maxPerIp = this.topIps.maxLowerBound();
    const top = this.topPaths.top(TOP_PATHS_REPORTED);
    const div = this.diversity?.estimate() ?? 0;
    return {
      entity_type: this.type,
      entity,
      window_start: windowStart,
      window_end: windowEnd,
      requests: this.requests,
      requests_last_slide: lastSlideRequests,
      unique_ips: this.requests === 0 ? 0 : uniqueIps,
      unique_paths: Math.min(this.paths.estimate(), this.requests),
      unique_user_agents: Math.min(this.userAgents.estimate(), this.requests),
      unique_ja4s: this.type === 'asn' ? Math.min(div, this.requests) : 0,
      unique_asns: this.type === 'ja4' ? Math.min(div, this.requests) : 0,
      status_2xx: this.status2xx,
      status_3xx: this.status3xx,
      status_4xx: this.status4xx,
      status_5xx: this.status5xx,
      status_401: this.status401,
      status_403: this.status403,
      post_requests: this.post,
      static_requests: this.staticAssets,
      response_bytes: this.bytes,
      challenge_issued: this.challengeIssued,
      challenge_passed: this.challengePassed,
      challenge_failed: this.challengeFailed,
      http1_requests: this.http1,
      http2_requests: this.http2,
      http3_requests: this.http3,
      requests_per_ip_mean: this.requests === 0 ? 0 : this.requests / uniqueIps,
      requests_per_ip_max: maxPerIp,
      top_paths: top.map((e) => e.key),
      top_path_requests: top.map((e) => e.count),
    };
  }
}

/** The counter fields of {@link EntityAggregate}, in their serialised order (append only). */
const COUNTERS = [
  'requests', 'status2xx', 'status3xx', 'status4xx', 'status5xx', 'status401', 'status403', 'post', 'staticAssets', 'bytes',
  'challengeIssued', 'challengePassed', 'challengeFailed', 'http1', 'http2', 'http3',
] as const;

/** Serialised {@link EntityAggregate} (version 1). */
export interface EntityAggregateJSON {
  v: 1;
  type: EntityType;
  /** In the order of COUNTERS. */
  counters: number[];
  ips: DistinctCounterJSON;
  paths: DistinctCounterJSON;
  user_agents: DistinctCounterJSON;
  diversity: DistinctCounterJSON | null;
  top_paths: SpaceSavingJSON;
  top_ips: SpaceSavingJSON;
}

/** Binary form of an {@link EntityAggregate}: schemas/pane-bundle.avsc `EntityPartial` without its entity. */
export interface EntityAggregateWire {
  /** In the order of COUNTERS. */
  counters: number[];
  ips: DistinctCounterWire;
  paths: DistinctCounterWire;
  user_agents: DistinctCounterWire;
  diversity: DistinctCounterWire | null;
  top_paths: SpaceSavingWire;
  top_ips: SpaceSavingWire;
}

/**
 * Aggregates of one entity over one closed window. Counters are exact. Distinct counts are
 * exact up to 3,072 distinct values per pane and sketch estimates (≈0.8% standard error)
 * beyond; top paths and requests_per_ip_max come from Space-Saving summaries.
 */
export interface WindowAggregateRow {
  entity_type: EntityType;
  entity: string;
  /** Epoch ms, inclusive. */
  window_start: number;
  /** Epoch ms, exclusive. */
  window_end: number;
  requests: number;
  /**
   * Requests in the window's newest slide (its last pane): the onset of a burst, which the whole
   * window dilutes (a burst 15 s old is a quarter of a 60 s window).
   */
  requests_last_slide: number;
  unique_ips: number;
  unique_paths: number;
  unique_user_agents: number;
  /** Fingerprint diversity; set for `asn` entities, 0 otherwise. */
  unique_ja4s: number;
  /** ASN diversity; set for `ja4` entities, 0 otherwise. */
  unique_asns: number;
  status_2xx: number;
  status_3xx: number;
  status_4xx: number;
  status_5xx: number;
  status_401: number;
  status_403: number;
  post_requests: number;
  static_requests: number;
  response_bytes: number;
  challenge_issued: number;
  challenge_passed: number;
  challenge_failed: number;
  http1_requests: number;
  http2_requests: number;
  http3_requests: number;
  requests_per_ip_mean: number;
  /** Requests of the busiest client IP (a lower bound, exact when the entity has ≤ 16 IPs). */
  requests_per_ip_max: number;
  /** The most requested paths, most first (up to 5). */
  top_paths: string[];
  /** Requests of each of top_paths (upper bounds, exact when the entity has ≤ 16 paths). */
  top_path_requests: number[];
}
