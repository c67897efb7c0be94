import type { RequestLog } from '../schemas/index.js';

/** The entity types of CONTRACTS §2. */
export type EntityType = 'asn' | 'ja4' | 'asn_ja4';
/** All entity types, in output order. */
export const ENTITY_TYPES: readonly EntityType[] = ['asn', 'ja4', 'asn_ja4'];

/** The entity string of the `asn_ja4` pair (CONTRACTS §2: `<asn>|<ja4>`). */
export function pairKey(asn: number, ja4: string): string {
  return `${asn}|${ja4}`;
}

const STATIC_ASSET = /\.(?:js|mjs|css|png|jpe?g|gif|svg|webp|avif|ico|woff2?|ttf|map)(?:\?|$)/i;

/** Whether a request path is a static asset (script, style, image, font). Computed once per record. */
export function isStaticAsset(path: string): boolean {
  return STATIC_ASSET.test(path);
}

/**
 * The partial aggregate of one entity in one pane (one slide of event time). Panes merge
 * into windows, so per-event cost does not depend on window size / slide.
 * First version: distinct counts are exact sets; the windows issue swaps in mergeable sketches.
 */
export class EntityAggregate {
  requests = 0;
  /** Requests per client IP; its size is unique_ips. */
  readonly ips: Map<string, number>;
  readonly paths: Set<string>;
  readonly userAgents: Set<string>;
  /** For asn entities: fingerprints seen (null ja4 counted as ""). */
  readonly ja4s: Set<string>;
  /** For ja4 entities: ASNs seen. */
  readonly asns: Set<number>;

  /** An empty aggregate, or (from {@link clone}) one whose collections are copies of these. */
  constructor(ips?: Map<string, number>, paths?: Set<string>, userAgents?: Set<string>, ja4s?: Set<string>, asns?: Set<number>) {
    this.ips = new Map(ips);
    this.paths = new Set(paths);
    this.userAgents = new Set(userAgents);
    this.ja4s = new Set(ja4s);
    this.asns = new Set(asns);
  }
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

  /** Adds one request; `staticAsset` is {@link isStaticAsset} of its path. */
  add(r: RequestLog, type: EntityType, staticAsset: boolean): void {
    this.requests++;
    this.ips.set(r.client_ip, (this.ips.get(r.client_ip) ?? 0) + 1);
    this.paths.add(r.path);
    this.userAgents.add(r.user_agent);
    if (type === 'asn') this.ja4s.add(r.ja4 ?? '');
    else if (type === 'ja4') this.asns.add(r.asn);
    const s = r.status;
    if (s >= 200 && s < 300) this.status2xx++;
    else if (s >= 300 && s < 400) this.status3xx++;
    else if (s >= 400 && s < 500) {
      this.status4xx++;
      if (s === 401) this.status401++;
      else if (s === 403) this.status403++;
    } else if (s >= 500 && s < 600) this.status5xx++;
    if (r.method === 'POST') this.post++;
    if (staticAsset) this.staticAssets++;
    this.bytes += r.response_bytes;
    if (r.challenge === 'ISSUED') this.challengeIssued++;
    else if (r.challenge === 'PASSED') this.challengePassed++;
    else if (r.challenge === 'FAILED') this.challengeFailed++;
    if (r.protocol === 'HTTP/2') this.http2++;
    else if (r.protocol === 'HTTP/3') this.http3++;
    else this.http1++;
  }

  /** A copy; faster than merging into an empty aggregate because Map/Set copies are bulk operations. */
  clone(): EntityAggregate {
    const c = new EntityAggregate(this.ips, this.paths, this.userAgents, this.ja4s, this.asns);
    c.requests = this.requests;
    c.status2xx = this.status2xx;
    c.status3xx = this.status3xx;
    c.status4xx = this.status4xx;
    c.status5xx = this.status5xx;
    c.status401 = this.status401;
    c.status403 = this.status403;
    c.post = this.post;
    c.staticAssets = this.staticAssets;
    c.bytes = this.bytes;
    c.challengeIssued = this.challengeIssued;
    c.challengePassed = this.challengePassed;
    c.challengeFailed = this.challengeFailed;
    c.http1 = this.http1;
    c.http2 = this.http2;
    c.http3 = this.http3;
    return c;
  }

  /** Adds another partial aggregate of the same entity into this one. */
  merge(o: EntityAggregate): void {
    this.requests += o.requests;
    for (const [ip, n] of o.ips) this.ips.set(ip, (this.ips.get(ip) ?? 0) + n);
    for (const p of o.paths) this.paths.add(p);
    for (const u of o.userAgents) this.userAgents.add(u);
    for (const j of o.ja4s) this.ja4s.add(j);
    for (const a of o.asns) this.asns.add(a);
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

  /** The wire row of CONTRACTS §5 (`--aggregates`) and ClickHouse `window_aggregates`. */
  toRow(entityType: EntityType, entity: string, windowStart: number, windowEnd: number): WindowAggregateRow {
    let maxPerIp = 0;
    for (const n of this.ips.values()) if (n > maxPerIp) maxPerIp = n;
    return {
      entity_type: entityType,
      entity,
      window_start: windowStart,
      window_end: windowEnd,
      requests: this.requests,
      unique_ips: this.ips.size,
      unique_paths: this.paths.size,
      unique_user_agents: this.userAgents.size,
      unique_ja4s: entityType === 'asn' ? this.ja4s.size : 0,
      unique_asns: entityType === 'ja4' ? this.asns.size : 0,
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
      requests_per_ip_mean: this.ips.size === 0 ? 0 : this.requests / this.ips.size,
      requests_per_ip_max: maxPerIp,
    };
  }
}

/** Aggregates of one entity over one closed window. Counts are exact in this version. */
export interface WindowAggregateRow {
  entity_type: EntityType;
  entity: string;
  /** Epoch ms, inclusive. */
  window_start: number;
  /** Epoch ms, exclusive. */
  window_end: number;
  requests: number;
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
  requests_per_ip_max: number;
}
