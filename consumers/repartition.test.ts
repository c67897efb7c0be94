import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RequestLog } from '../schemas/index.js';
import { digestRecord, type WindowAggregateRow } from './aggregates.js';
import { PaneBuilder } from './pane-builder.js';
import { decodeRepartition, encodeRepartition, partialMessages, type RepartitionMessage } from './repartition.js';
import { hashString } from './sketches.js';
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
  const deliver = (m: RepartitionMessage, to?: number): void => {
    const wire = encodeRepartition(m);
    const targets = to === undefined ? [hashString(wire.key) % repartitions] : [to];
    for (const t of targets) {
      const d = decodeRepartition(Buffer.from(wire.key), wire.value);
      const a = stage2[t] as WindowAssembler;
      if (d.kind === 'partial') a.addEntityPartial(d.pane, d.source, d.entityType, d.entity, d.agg);
      else {
        for (let p = 0; p < d.sources; p++) a.registerSource(p);
        a.progress(d.source, d.sealedThrough, d.idle);
      }
    }
  };
  const handOver = (b: PaneBuilder, all: boolean): void => {
    for (const pane of b.seal(all)) for (const m of partialMessages(pane)) deliver(m);
    // At the end every source goes idle, as in live mode before an idle flush.
    for (let t = 0; t < repartitions; t++) deliver({ kind: 'progress', source: b.source, sealedThrough: b.sealedThrough, idle: all, sources: partitions }, t);
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
    expect(() => decodeRepartition('asn:1', Buffer.from('{'))).toThrow(/not JSON/);
    expect(() => decodeRepartition('asn:1', Buffer.from('{"v":2}'))).toThrow(/version/);
    expect(() => decodeRepartition('nope', Buffer.from('{"v":1,"kind":"partial","source":0,"pane":0}'))).toThrow(/key/);
    expect(() => decodeRepartition(null, Buffer.from('{"v":1,"kind":"progress","source":-1}'))).toThrow(/source/);
  });
});
