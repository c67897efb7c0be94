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
});
