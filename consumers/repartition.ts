import { EntityAggregate, ENTITY_TYPES, type EntityAggregateWire, type EntityType } from './aggregates.js';
import type { PanePartial } from './pane-builder.js';
import { loadSchema } from '../schemas/index.js';

/** One entity's partial aggregate over a pane. */
export interface EntityPartial {
  entityType: EntityType;
  entity: string;
  agg: EntityAggregate;
}

/**
 * The messages of the repartition topic between the two window stages (docs/scaling.md §4):
 * the partials of one pane of one input partition, bundled per repartition partition, each
 * entity's in the partition of its key so that every partial of an entity meets in one
 * stage-2 partition; and progress markers, which stage 1 sends to every partition so that each
 * stage-2 member can compute the watermark alone.
 */
export type RepartitionMessage =
  | { kind: 'partials'; pane: number; source: number; partials: EntityPartial[] }
  | { kind: 'progress'; source: number; sealedThrough: number; idle: boolean; sources: number };

/** The repartition key of an entity, `<entity_type>:<entity>` (UTF-8): its partition is this key's, as the Java client and kafkajs choose it. */
export function repartitionKey(entityType: EntityType, entity: string): string {
  return `${entityType}:${entity}`;
}

let keyBytes = Buffer.allocUnsafe(1024);

/**
 * The partition that Kafka's default partitioner (Java client; kafkajs 2 `DefaultPartitioner`)
 * gives a message keyed by `key` (as UTF-8): murmur2 (seed 0x9747b28c), made positive, modulo
 * `partitions`. Written here in 32-bit arithmetic: kafkajs's own emulates 64-bit longs and cost
 * 7% of the service's time when it partitioned every partial. Partials keep the partition they
 * had when each was its own message keyed by entity, so state restored from a changelog
 * written before bundling stays in the partition of its entity.
 */
export function kafkaPartition(key: string, partitions: number): number {
  if (key.length * 3 > keyBytes.length) keyBytes = Buffer.allocUnsafe(Math.max(key.length * 3, keyBytes.length * 2));
  const b = keyBytes;
  const len = b.write(key, 0, 'utf8');
  const m = 0x5bd1e995;
  let h = (0x9747b28c ^ len) | 0;
  const end = len & ~3;
  for (let i = 0; i < end; i += 4) {
    let k = b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  const tail = len & 3;
  if (tail > 0) {
    if (tail === 3) h ^= b[end + 2]! << 16;
    if (tail >= 2) h ^= b[end + 1]! << 8;
    h ^= b[end]!;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return (h & 0x7fffffff) % partitions;
}

/** Format marker of a version-2 value: this byte, then a schemas/pane-bundle.avsc record. (Version 1 was JSON, whose first byte is `{`.) */
const BUNDLE_MARKER = 0x02;
/** A bundle is split in halves until each is at most this many bytes (record batches are cut at 512 KiB, the topic's default limit is 1 MB). */
export const BUNDLE_MAX_BYTES = 256 * 1024;
/** Partials per bundle before any size check. */
const BUNDLE_MAX_PARTIALS = 2_000;

const bundleType = loadSchema('pane-bundle.avsc');

interface BundleWire {
  source: number;
  pane: number;
  partials: ({ entity_type: EntityType; entity: string } & EntityAggregateWire)[];
}

/** Where bundles are encoded, after the marker byte; grown when a bundle does not fit. */
let scratch = Buffer.allocUnsafe(BUNDLE_MAX_BYTES);

function encodeBundle(source: number, pane: number, partials: BundleWire['partials'], out: Buffer[]): void {
  const wire: BundleWire = { source, pane, partials };
  let end = bundleType.encode(wire, scratch, 1);
  // A negative result is the number of bytes missing.
  if (end < 0) {
    scratch = Buffer.allocUnsafe(2 * (scratch.length - end));
    end = bundleType.encode(wire, scratch, 1);
  }
  if (end > BUNDLE_MAX_BYTES && partials.length > 1) {
    const half = partials.length >> 1;
    encodeBundle(source, pane, partials.slice(0, half), out);
    encodeBundle(source, pane, partials.slice(half), out);
    return;
  }
  scratch[0] = BUNDLE_MARKER;
  // One copy, out of the scratch buffer, as avsc's own toBuffer makes.
  out.push(Buffer.from(scratch.subarray(0, end)));
}

/**
 * The messages that hand a sealed pane over: per repartition partition (of `partitions`), one
 * bundle of its entities' partials (more when one would pass {@link BUNDLE_MAX_BYTES}), in
 * type then insertion order, with the partition set. kafkajs then encodes a few large messages
 * rather than one per entity (version 1 sent 0.6 messages of ~670 bytes of JSON per input record).
 */
export function paneMessages(p: PanePartial, partitions: number): { key: string; value: Buffer; partition: number }[] {
  const byPartition: BundleWire['partials'][] = Array.from({ length: partitions }, () => []);
  for (const entityType of ENTITY_TYPES) {
    for (const [entity, agg] of p.entities[entityType].entries()) {
      const list = byPartition[kafkaPartition(repartitionKey(entityType, entity), partitions)]!;
      list.push({ entity_type: entityType, entity, ...agg.toWire() });
    }
  }
  const key = `~partials:${p.source}:${p.start}`;
  const out: { key: string; value: Buffer; partition: number }[] = [];
  for (let r = 0; r < partitions; r++) {
    const list = byPartition[r]!;
    const values: Buffer[] = [];
    for (let i = 0; i < list.length; i += BUNDLE_MAX_PARTIALS) encodeBundle(p.source, p.start, list.slice(i, i + BUNDLE_MAX_PARTIALS), values);
    for (const value of values) out.push({ key, value, partition: r });
  }
  return out;
}

/** Encodes a progress marker as a UTF-8 JSON value (version 1); it goes to every partition. */
export function encodeProgress(m: Extract<RepartitionMessage, { kind: 'progress' }>): { key: string; value: Buffer } {
  return {
    key: `~progress:${m.source}`,
    value: Buffer.from(
      JSON.stringify({ v: 1, kind: 'progress', source: m.source, sealed_through: Number.isFinite(m.sealedThrough) ? m.sealedThrough : null, idle: m.idle, sources: m.sources }),
    ),
  };
}

function bad(what: string): never {
  throw new TypeError(`repartition message: ${what}`);
}

function decodeBundle(value: Buffer): RepartitionMessage {
  let w: BundleWire;
  try {
    w = bundleType.fromBuffer(value.subarray(1)) as BundleWire;
  } catch (err) {
    bad(`value is not a pane bundle (${(err as Error).message})`);
  }
  if (w.source < 0) bad("'source' must be a partition number");
  if (!Number.isSafeInteger(w.pane)) bad("'pane' must be an integer (epoch ms)");
  const partials: EntityPartial[] = [];
  for (const x of w.partials) {
    let agg: EntityAggregate;
    try {
      agg = EntityAggregate.fromWire(x.entity_type, x);
    } catch (err) {
      bad(`partial of ${x.entity_type} ${JSON.stringify(x.entity.slice(0, 200))}: ${(err as Error).message}`);
    }
    partials.push({ entityType: x.entity_type, entity: x.entity, agg });
  }
  return { kind: 'partials', pane: w.pane, source: w.source, partials };
}

/**
 * Decodes a repartition message: a version-2 bundle ({@link paneMessages}), a progress marker,
 * or a version-1 partial (one JSON message per entity, keyed by entity: what a stage 1 of an
 * earlier release left in the topic), which becomes a bundle of one. Throws a TypeError naming what is wrong.
 */
export function decodeRepartition(key: Buffer | string | null, value: Buffer | null): RepartitionMessage {
  if (value === null) bad('null value');
  if (value.length > 0 && value[0] === BUNDLE_MARKER) return decodeBundle(value);
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(value.toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    bad(`value is neither a pane bundle nor JSON (${(err as Error).message})`);
  }
  if (typeof o !== 'object' || o === null || o.v !== 1) bad(`unsupported version ${JSON.stringify((o as { v?: unknown } | null)?.v)}`);
  const source = o.source;
  if (!Number.isSafeInteger(source) || (source as number) < 0) bad("'source' must be a partition number");
  if (o.kind === 'progress') {
    // null: nothing sealed yet (JSON has no -Infinity).
    const st = o.sealed_through;
    if (st !== null && (typeof st !== 'number' || !Number.isFinite(st))) bad("'sealed_through' must be a number or null");
    // How many input partitions there are: stage 2 waits for every one of them, not only those it has heard from.
    const sources = o.sources;
    if (!Number.isSafeInteger(sources) || (sources as number) <= (source as number)) bad("'sources' must be the input topic's partition count");
    return { kind: 'progress', source: source as number, sealedThrough: st ?? Number.NEGATIVE_INFINITY, idle: o.idle === true, sources: sources as number };
  }
  if (o.kind !== 'partial') bad(`unknown kind ${JSON.stringify(o.kind)}`);
  if (!Number.isSafeInteger(o.pane)) bad("'pane' must be an integer (epoch ms)");
  const k = key === null ? '' : key.toString();
  const colon = k.indexOf(':');
  const entityType = k.slice(0, colon) as EntityType;
  if (colon < 0 || !ENTITY_TYPES.includes(entityType)) bad(`key ${JSON.stringify(k)} is not <entity_type>:<entity>`);
  const agg = EntityAggregate.fromJSON(o.agg);
  if (agg.type !== entityType) bad(`aggregate type ${agg.type} differs from the key's ${entityType}`);
  return { kind: 'partials', pane: o.pane as number, source: source as number, partials: [{ entityType, entity: k.slice(colon + 1), agg }] };
}
