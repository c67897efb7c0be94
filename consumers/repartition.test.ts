import fc from 'fast-check';
import { Partitioners } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import type { RequestLog } from '../schemas/index.js';
import { digestRecord, EntityAggregate, type WindowAggregateRow } from './aggregates.js';
import { PaneBuilder } from './pane-builder.js';
import { BUNDLE_MAX_BYTES, decodeRepartition, encodeProgress, kafkaPartition, paneMessages, repartitionKey } from './repartition.js';
import { WindowAssembler, type ClosedWindow } from './window-assembler.js';
import { SlidingWindows, windowConfigSchema } from './windows.js';

const cfg = windowConfigSchema.parse({ size_ms: 6_000, slide_ms: 2_000, allowed_lateness_ms: 1_000 });

function log(timestamp: number, asn: number, ja4: string | null, ip: string, path: string): RequestLog {
  return {
    timestamp, request_id: String(timestamp), client_ip: ip, asn, country: 'XX', ja4, user_agent: `ua-${asn}`,
    method: 'GET', host: 'h', path, status: 200, response_bytes: 10, protocol: 'HTTP/2', challenge: 'NONE',
  };
}

function rowsByKey(windows: ClosedWindow[]): Map<string, WindowAggregateRow> {
  const out = new Map<string, WindowAggregateRow>();
  for (const w of windows) {
    for (const r of w.rows) {
      const k = `${r.entity_type}/${r.entity}/${r.window_start}`;
      expect(out.has(k)).toBe(false); // each (entity, window) is emitted by exactly one stage-2 partition
      out.set(k, r);
    }
  }
  return out;
}

/**
 * Stage 1 and stage 2 as separate "processes" joined only by encoded repartition messages,
 * routed by key hash over R partitions, with progress markers broadcast to all of them.
 */
function distributed(records: { part: number; r: RequestLog }[], partitions: number, repartitions: number): ClosedWindow[] {
  const evictions = { entities: 0, requests: 0 };
  const builders = Array.from({ length: partitions }, (_, p) => new PaneBuilder(p, cfg.slide_ms, cfg.allowed_lateness_ms, 1_000, evictions));
  // Stage 2 learns the sources from the markers alone.
  const stage2 = Array.from({ length: repartitions }, () => new WindowAssembler(cfg.size_ms, cfg.slide_ms));
  const deliver = (to: number, key: string, value: Buffer): void => {
    const d = decodeRepartition(Buffer.from(key), value);
    const a = stage2[to] as WindowAssembler;
    if (d.kind === 'partials') for (const p of d.partials) a.addEntityPartial(d.pane, d.source, p.entityType, p.entity, p.agg);
    else {
      for (let p = 0; p < d.sources; p++) a.registerSource(p);
      a.progress(d.source, d.sealedThrough, d.idle);
    }
  };
  const handOver = (b: PaneBuilder, all: boolean): void => {
    for (const pane of b.seal(all)) for (const m of paneMessages(pane, repartitions)) deliver(m.partition, m.key, m.value);
    // At the end every source goes idle, as in live mode before an idle flush.
    const marker = encodeProgress({ kind: 'progress', source: b.source, sealedThrough: b.sealedThrough, idle: all, sources: partitions });
    for (let t = 0; t < repartitions; t++) deliver(t, marker.key, marker.value);
  };
  const out: ClosedWindow[] = [];
  for (const { part, r } of records) {
    const b = builders[part] as PaneBuilder;
    b.add(r, digestRecord(r), -1);
    if (b.canSeal()) handOver(b, false);
    for (const a of stage2) out.push(...a.drain());
  }
  for (const b of builders) handOver(b, true);
  for (const a of stage2) {
    a.flush();
    out.push(...a.drain());
  }
  // Every partition ends the flush at the same next window, whatever entities it holds (the rules stage waits for all of them).
  expect(new Set(stage2.map((a) => a.nextWindowStart)).size).toBe(1);
  return out;
}

describe('repartitioned windows', () => {
  it('give exactly the rows of the single-process engine, over any number of stage-2 partitions', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ part: fc.integer({ min: 0, max: 2 }), dt: fc.integer({ min: 0, max: 1_500 }), back: fc.integer({ min: 0, max: 9_000 }),
            lateOne: fc.boolean(), asn: fc.integer({ min: 1, max: 4 }), ja4: fc.constantFrom(null, 'a', 'b', 'c'),
            ip: fc.integer({ min: 1, max: 6 }), path: fc.integer({ min: 1, max: 20 }) }),
          { minLength: 1, maxLength: 250 },
        ),
        fc.integer({ min: 1, max: 5 }),
        (steps, repartitions) => {
          const clocks = [1_700_000_000_000, 1_700_000_003_000, 1_699_999_995_000];
          const records = steps.map((s) => {
            clocks[s.part] = (clocks[s.part] as number) + s.dt;
            const t = s.lateOne ? (clocks[s.part] as number) - s.back : (clocks[s.part] as number);
            return { part: s.part, r: log(t, s.asn, s.ja4, `10.0.0.${s.ip}`, `/p/${s.path}`) };
          });
          const single = new SlidingWindows(cfg);
          for (const p of [0, 1, 2]) single.registerPartition(p);
          const reference: ClosedWindow[] = [];
          for (const { part, r } of records) {
            single.add(r, part);
            reference.push(...single.drain());
          }
          reference.push(...single.closeAll());
          expect(rowsByKey(distributed(records, 3, repartitions))).toEqual(rowsByKey(reference));
        },
      ),
      { numRuns: 150 },
    );
  });

  it('rejects malformed messages with a reason', () => {
    expect(() => decodeRepartition('asn:1', null)).toThrow(/null value/);
    expect(() => decodeRepartition('asn:1', Buffer.from('{'))).toThrow(/neither a pane bundle nor JSON/);
    expect(() => decodeRepartition('asn:1', Buffer.from('{"v":2}'))).toThrow(/version/);
    expect(() => decodeRepartition('nope', Buffer.from('{"v":1,"kind":"partial","source":0,"pane":0}'))).toThrow(/key/);
    expect(() => decodeRepartition(null, Buffer.from('{"v":1,"kind":"progress","source":-1}'))).toThrow(/source/);
  });
});

/** A pane of one source with `entities` ASNs (and as many JA4s and pairs), `perEntity` requests each over `ips` IPs and `paths` paths. */
function paneOf(entities: number, perEntity: number, ips: number, paths: number, longPath = false) {
  const b = new PaneBuilder(3, 10_000, 0, 100_000, { entities: 0, requests: 0 });
  let t = 1_700_000_000_000;
  for (let e = 0; e < entities; e++) {
    for (let i = 0; i < perEntity; i++) {
      // Two long paths that differ only after the 1,024 characters a summary keeps.
      const path = longPath && i < 2 ? `/${'x'.repeat(2_000)}${i}` : `/p/${i % paths}`;
      const r = log(t, 64_500 + e, `t13d${e}é`, `10.${e & 255}.${(i % ips) >> 8}.${(i % ips) & 255}`, path);
      b.add(r, digestRecord(r), -1);
    }
  }
  t += 20_000;
  const [pane] = b.seal(true);
  return pane!;
}

/** toJSON with the sparse level's hashes sorted: a rebuilt hash table may lay out the same set in another order. */
function normal(a: EntityAggregate): unknown {
  return JSON.parse(JSON.stringify(a.toJSON()), (k, v: unknown) => {
    if (k !== 'hashes' || typeof v !== 'string') return v;
    const bytes = Buffer.from(v, 'base64');
    const hashes: number[] = [];
    for (let i = 0; i < bytes.length; i += 4) hashes.push(bytes.readUInt32LE(i));
    return hashes.sort((x, y) => x - y);
  });
}

describe('repartition messages (version 2: pane bundles)', () => {
  it('partition an entity as Kafka\'s default partitioner partitions its key', () => {
    const kafkajs = Partitioners.DefaultPartitioner();
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.fullUnicodeString({ maxLength: 200 }), fc.string({ minLength: 100, maxLength: 400 })), fc.integer({ min: 1, max: 64 }), (key, n) => {
        const partitionMetadata = Array.from({ length: n }, (_, i) => ({ partitionId: i, leader: 0, partitionErrorCode: 0, replicas: [0], isr: [0] }));
        expect(kafkaPartition(key, n)).toBe(kafkajs({ topic: 't', partitionMetadata, message: { key, value: null } }));
      }),
      { numRuns: 2_000 },
    );
  });

  it('carry every partial of a pane exactly once, in its entity\'s partition, aggregates unchanged', () => {
    // Small, sparse (17 to 3,072 distinct) and dense (more) counters; full and partly full summaries; a cut 2,000-character path.
    for (const [entities, perEntity, ips, paths] of [[40, 3, 2, 2], [5, 400, 200, 40], [2, 5_000, 4_000, 20]] as const) {
      const pane = paneOf(entities, perEntity, ips, paths, true);
      for (const partitions of [1, 4, 7]) {
        const seen = new Map<string, EntityAggregate>();
        for (const m of paneMessages(pane, partitions)) {
          const d = decodeRepartition(m.key, m.value);
          if (d.kind !== 'partials') throw new Error('expected partials');
          expect(d.pane).toBe(pane.start);
          expect(d.source).toBe(3);
          for (const p of d.partials) {
            expect(kafkaPartition(repartitionKey(p.entityType, p.entity), partitions)).toBe(m.partition);
            const k = repartitionKey(p.entityType, p.entity);
            expect(seen.has(k)).toBe(false);
            seen.set(k, p.agg);
          }
        }
        const expected = new Map<string, EntityAggregate>();
        for (const [type, map] of Object.entries(pane.entities)) for (const [entity, agg] of map.entries()) expected.set(`${type}:${entity}`, agg);
        expect([...seen.keys()].sort()).toEqual([...expected.keys()].sort());
        for (const [k, agg] of expected) {
          const got = seen.get(k)!;
          expect(normal(got)).toEqual(normal(agg));
          // Decoded sketches behave as the originals: merging each into a copy gives the same estimates.
          const a = agg.clone();
          a.merge(got);
          const b = agg.clone();
          b.merge(agg);
          expect(normal(a)).toEqual(normal(b));
        }
      }
    }
  });

  it('split a bundle that would pass the size limit, and are much smaller than version 1 JSON', () => {
    const pane = paneOf(3_000, 4, 3, 3);
    const msgs = paneMessages(pane, 2);
    expect(msgs.length).toBeGreaterThan(2);
    let partials = 0;
    let bytes = 0;
    for (const m of msgs) {
      expect(m.value.length).toBeLessThanOrEqual(BUNDLE_MAX_BYTES);
      const d = decodeRepartition(m.key, m.value);
      if (d.kind === 'partials') partials += d.partials.length;
      bytes += m.value.length;
    }
    expect(partials).toBe(9_000);
    let jsonBytes = 0;
    for (const map of Object.values(pane.entities)) {
      for (const [, agg] of map.entries()) jsonBytes += JSON.stringify({ v: 1, kind: 'partial', pane: pane.start, source: 3, agg: agg.toJSON() }).length;
    }
    expect(bytes).toBeLessThan(jsonBytes / 2);
  });

  it('still read version-1 partials (one JSON message per entity, keyed by it) left by an earlier release', () => {
    const pane = paneOf(3, 10, 4, 4);
    for (const [type, map] of Object.entries(pane.entities)) {
      for (const [entity, agg] of map.entries()) {
        const value = Buffer.from(JSON.stringify({ v: 1, kind: 'partial', pane: pane.start, source: 3, agg: agg.toJSON() }));
        const d = decodeRepartition(`${type}:${entity}`, value);
        expect(d).toMatchObject({ kind: 'partials', pane: pane.start, source: 3 });
        if (d.kind !== 'partials') throw new Error('expected partials');
        expect(d.partials).toHaveLength(1);
        expect(d.partials[0]!.entity).toBe(entity);
        expect(d.partials[0]!.agg.toJSON()).toEqual(agg.toJSON());
      }
    }
  });

  it('reject a damaged bundle with a reason', () => {
    const [m] = paneMessages(paneOf(2, 5, 2, 2), 1);
    const value = m!.value;
    expect(() => decodeRepartition(null, value.subarray(0, value.length - 3))).toThrow(/not a pane bundle/);
    expect(() => decodeRepartition(null, Buffer.concat([value, Buffer.from([1, 2, 3])]))).toThrow(/not a pane bundle/);
    expect(() => decodeRepartition(null, Buffer.from([2]))).toThrow(/not a pane bundle/);
    // Well-formed Avro, wrong content: a counter set of the wrong length.
    const agg = new EntityAggregate('asn_ja4');
    agg.add(log(1, 1, 'a', '10.0.0.1', '/'), digestRecord(log(1, 1, 'a', '10.0.0.1', '/')));
    const bad = { ...agg.toWire(), counters: [1, 2] };
    expect(() => EntityAggregate.fromWire('asn_ja4', bad)).toThrow(/counters/);
    expect(() => EntityAggregate.fromWire('asn_ja4', { ...agg.toWire(), diversity: agg.toWire().ips })).toThrow(/diversity/);
    expect(() => EntityAggregate.fromWire('asn', agg.toWire())).toThrow(/diversity/);
    expect(() => EntityAggregate.fromWire('asn_ja4', { ...agg.toWire(), ips: { level: 'small', data: Buffer.alloc(4) } })).toThrow(/hashes\[0\]/);
    expect(() => EntityAggregate.fromWire('asn_ja4', { ...agg.toWire(), top_ips: { capacity: 0, total: 0, entries: [] } })).toThrow(/capacity/);
  });
});
