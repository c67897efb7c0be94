import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RequestLog } from '../schemas/index.js';
import { digestRecord } from './aggregates.js';
import { BoundedEntityMap, type EvictionStats } from './entity-map.js';

const r: RequestLog = {
  timestamp: 0, request_id: '1', client_ip: '10.0.0.1', asn: 1, country: 'XX', ja4: 'x', user_agent: 'ua', method: 'GET',
  host: 'h', path: '/', status: 200, response_bytes: 1, protocol: 'HTTP/2', challenge: 'NONE',
};
const d = digestRecord(r);

describe('BoundedEntityMap', () => {
  it('never holds more than the cap, never evicts a heavy hitter, and accounts for every request', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 10, max: 200 }),
        fc.array(fc.oneof(fc.constant('heavy'), fc.constant('heavy'), fc.nat({ max: 1_000_000 }).map((n) => `fresh-${n}`)), { minLength: 1, maxLength: 3_000 }),
        (cap, keys) => {
          const stats: EvictionStats = { entities: 0, requests: 0 };
          const m = new BoundedEntityMap('ja4', cap, stats);
          for (const k of keys) {
            m.take(k).add(r, d);
            expect(m.size).toBeLessThanOrEqual(cap);
          }
          let held = 0;
          for (const [, a] of m.entries()) held += a.requests;
          expect(held + stats.requests).toBe(keys.length);
          const heavy = keys.filter((k) => k === 'heavy').length;
          // Space-Saving with batched eviction: a key above N / (0.9 cap) of the stream stays, with its exact count.
          if (heavy > keys.length / Math.floor(cap * 0.9)) {
            const kept = [...m.entries()].find(([k]) => k === 'heavy');
            expect(kept?.[1].requests).toBe(heavy);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('counts a flood of fresh keys as evictions', () => {
    const stats: EvictionStats = { entities: 0, requests: 0 };
    const m = new BoundedEntityMap('ja4', 1_000, stats);
    for (let i = 0; i < 100_000; i++) m.take(i % 10 === 0 ? 'heavy' : `fresh-${i}`).add(r, d);
    expect(m.size).toBeLessThanOrEqual(1_000);
    expect(stats.entities).toBeGreaterThan(85_000);
    expect([...m.entries()].find(([k]) => k === 'heavy')?.[1].requests).toBe(10_000);
  });

  it('keeps light benign entities that come back through a flood of fresh keys, losing at most their first request', () => {
    const stats: EvictionStats = { entities: 0, requests: 0 };
    const m = new BoundedEntityMap('asn_ja4', 1_000, stats);
    // 300 benign keys with 3 requests each, scattered through 100,000 one-off flood keys.
    let seed = 42;
    const rand = (): number => ((seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0) / 2 ** 32);
    const stream: string[] = [];
    for (let i = 0; i < 100_000; i++) stream.push(`flood-${i}`);
    for (let b = 0; b < 300; b++) for (let j = 0; j < 3; j++) stream.splice(Math.floor(rand() * stream.length), 0, `benign-${b}`);
    for (const k of stream) m.take(k).add(r, d);
    const held = new Map([...m.entries()].map(([k, a]) => [k, a.requests]));
    let total = 0;
    for (const a of held.values()) total += a;
    expect(total + stats.requests).toBe(stream.length);
    for (let b = 0; b < 300; b++) expect(held.get(`benign-${b}`) ?? 0).toBeGreaterThanOrEqual(2);
    // Space-Saving alone (the earlier rule) lost most of them: its floor climbs past 3 under such a flood.
    expect(m.size).toBeLessThanOrEqual(1_000);
  });

  it('at seal, reports everything when under the cap, and only entities seen again once it had to evict', () => {
    const stats: EvictionStats = { entities: 0, requests: 0 };
    const calm = new BoundedEntityMap('ja4', 100, stats);
    for (let i = 0; i < 100; i++) calm.take(`once-${i}`).add(r, d);
    calm.seal();
    expect(calm.size).toBe(100);
    expect(stats.entities).toBe(0);

    const m = new BoundedEntityMap('ja4', 100, stats);
    for (let i = 0; i < 1_000; i++) {
      m.take(`once-${i}`).add(r, d);
      if (i % 50 === 0) for (let j = 0; j < 3; j++) m.take(`repeat-${i}`).add(r, d);
    }
    const before = m.size;
    m.seal();
    const keys = [...m.entries()].map(([k]) => k);
    expect(keys.length).toBeLessThan(before);
    expect(keys.sort()).toEqual(Array.from({ length: 20 }, (_, i) => `repeat-${i * 50}`).sort());
    let held = 0;
    for (const [, a] of m.entries()) held += a.requests;
    expect(held + stats.requests).toBe(1_000 + 20 * 3);
  });
});
