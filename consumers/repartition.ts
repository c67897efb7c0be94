import { EntityAggregate, ENTITY_TYPES, type EntityType } from './aggregates.js';
import type { PanePartial } from './pane-builder.js';

/**
 * The messages of the repartition topic between the two window stages (docs/scaling.md §4):
 * one per entity and pane with the entity's partial aggregate, keyed by entity so that every
 * partial of an entity meets in one stage-2 partition; and progress markers, which stage 1
 * sends to every partition so that each stage-2 member can compute the watermark alone.
 */
export type RepartitionMessage =
  | { kind: 'partial'; pane: number; source: number; entityType: EntityType; entity: string; agg: EntityAggregate }
  | { kind: 'progress'; source: number; sealedThrough: number; idle: boolean; sources: number };

/** The repartition key of an entity: `<entity_type>:<entity>` (UTF-8). */
export function repartitionKey(entityType: EntityType, entity: string): string {
  return `${entityType}:${entity}`;
}

/** Encodes a message as a UTF-8 JSON value (version 1). */
export function encodeRepartition(m: RepartitionMessage): { key: string; value: Buffer } {
  if (m.kind === 'partial') {
    return {
      key: repartitionKey(m.entityType, m.entity),
      value: Buffer.from(JSON.stringify({ v: 1, kind: 'partial', pane: m.pane, source: m.source, agg: m.agg.toJSON() })),
    };
  }
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

/** Decodes {@link encodeRepartition}'s output; throws a TypeError naming what is wrong. */
export function decodeRepartition(key: Buffer | string | null, value: Buffer | null): RepartitionMessage {
  if (value === null) bad('null value');
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(value.toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    bad(`value is not JSON (${(err as Error).message})`);
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
  return { kind: 'partial', pane: o.pane as number, source: source as number, entityType, entity: k.slice(colon + 1), agg };
}

/** The messages that hand a sealed pane over: one per entity, in type then insertion order. */
export function* partialMessages(p: PanePartial): Generator<RepartitionMessage> {
  for (const entityType of ENTITY_TYPES) {
    for (const [entity, agg] of p.entities[entityType].entries()) {
      yield { kind: 'partial', pane: p.start, source: p.source, entityType, entity, agg };
    }
  }
}
