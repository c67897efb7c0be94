import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RequestLog } from '../schemas/index.js';
import { windowConfigSchema, SlidingWindows, type ClosedWindow } from './windows.js';

function log(timestamp: number, asn: number, ja4: string | null, ip: string): RequestLog {
  return {
    timestamp, request_id: String(timestamp), client_ip: ip, asn, country: 'XX', ja4, user_agent: 'ua',
    method: 'GET', host: 'h', path: '/', status: 200, response_bytes: 10, protocol: 'HTTP/2', challenge: 'NONE',
  };
}

const cfg = windowConfigSchema.parse({ size_ms: 6_000, slide_ms: 2_000, allowed_lateness_ms: 1_000 });

function flatten(windows: ClosedWindow[]): Map<string, [number, number]> {
  const out = new Map<string, [number, number]>();
  for (const w of windows) for (const r of w.rows) out.set(`${r.entity_type}/${r.entity}/${r.window_start}`, [r.requests, r.unique_ips]);
  return out;
}

/** Brute force: a record counts in window s iff its time is in [s, s+size) and s was still open when it arrived. */
function bruteForce(logs: RequestLog[]): Map<string, [number, number]> {
  const { size_ms: size, slide_ms: slide, allowed_lateness_ms: late } = cfg;
  const acc = new Map<string, { n: number; ips: Set<string> }>();
  let wm = Number.NEGATIVE_INFINITY;
  let closedBelow = Number.NEGATIVE_INFINITY; // windows with start < closedBelow are closed
  for (const r of logs) {
    const t = r.timestamp;
    const last = Math.floor(t / slide) * slide;
    for (let s = last; s > t - size; s -= slide) {
      if (s < closedBelow) continue;
      const ents: [string, string][] = [['asn', String(r.asn)]];
      if (r.ja4) ents.push(['ja4', r.ja4], ['asn_ja4', `${r.asn}|${r.ja4}`]);
      for (const [ty, e] of ents) {
        const k = `${ty}/${e}/${s}`;
        const a = acc.get(k) ?? { n: 0, ips: new Set<string>() };
        a.n++;
        a.ips.add(r.client_ip);
        acc.set(k, a);
      }
    }
    wm = Math.max(wm, t);
    // Windows whose end + lateness <= wm close after this record.
    const c = Math.floor((wm - size - late) / slide) * slide + slide;
    if (c > closedBelow && acc.size > 0) closedBelow = c;
  }
  return new Map([...acc].map(([k, v]) => [k, [v.n, v.ips.size]]));
}

describe('SlidingWindows', () => {
  it('equals brute force on random out-of-order streams with late records', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ dt: fc.integer({ min: 0, max: 900 }), back: fc.integer({ min: 0, max: 12_000 }), lateOne: fc.boolean(),
            asn: fc.integer({ min: 1, max: 3 }), ja4: fc.constantFrom(null, 'a', 'b'), ip: fc.integer({ min: 1, max: 4 }) }),
          { minLength: 1, maxLength: 300 },
        ),
        (steps) => {
          let clock = 1_700_000_000_000;
          const logs = steps.map((s) => {
            clock += s.dt;
            return log(s.lateOne ? clock - s.back : clock, s.asn, s.ja4, `10.0.0.${s.ip}`);
          });
          const w = new SlidingWindows(cfg);
          const closed: ClosedWindow[] = [];
          for (const r of logs) {
            w.add(r);
            closed.push(...w.drain());
          }
          closed.push(...w.closeAll());
          expect(flatten(closed)).toEqual(bruteForce(logs));
          expect(w.stats.accepted + w.stats.late).toBe(logs.length);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('holds the watermark at the slowest partition and commits the oldest open offset', () => {
    const w = new SlidingWindows(cfg);
    w.registerPartition(0);
    w.registerPartition(1);
    w.add(log(10_000, 1, null, '1.1.1.1'), 0, 5);
    w.add(log(30_000, 1, null, '1.1.1.1'), 0, 6);
    expect(w.watermark).toBe(Number.NEGATIVE_INFINITY); // partition 1 has said nothing yet
    expect(w.drain()).toEqual([]);
    w.add(log(29_000, 1, null, '1.1.1.1'), 1, 100);
    expect(w.watermark).toBe(29_000);
    const closed = w.drain();
    expect(closed.map((c) => c.windowStart)).toEqual([6_000, 8_000, 10_000]);
    // Pane 10 000 (offset 5 of partition 0) is no longer needed; 28 000..30 000 still are.
    expect(Object.fromEntries(w.safeOffsets())).toEqual({ 0: 6, 1: 100 });
  });

  it('lets an idle partition stop holding back the watermark, and flushes when all are idle', () => {
    const w = new SlidingWindows(cfg);
    w.registerPartition(0);
    w.registerPartition(1);
    w.add(log(10_000, 1, null, '1.1.1.1'), 0, 0, 1_000);
    w.onIdle(1_000);
    expect(w.watermark).toBe(Number.NEGATIVE_INFINITY);
    w.onIdle(1_000 + cfg.idle_partition_ms); // partition 1 never spoke, partition 0 silent too
    expect(w.watermark).toBe(10_000);
    w.onIdle(1_000 + cfg.idle_flush_ms);
    const closed = w.drain();
    expect(closed.map((c) => c.windowStart)).toEqual([6_000, 8_000, 10_000]);
    expect(w.openPanes).toBe(0);
  });

  it('does not emit again the windows before a restored horizon', () => {
    const w = new SlidingWindows(cfg);
    w.restoreHorizon(10_000);
    expect(w.add(log(9_000, 1, null, '1.1.1.1'))).toBe(false);
    expect(w.stats.replayedClosed).toBe(1);
    w.add(log(11_000, 1, null, '1.1.1.1'));
    expect(w.closeAll().map((c) => c.windowStart)).toEqual([10_000]);
  });

  it('names the bad key in its config errors', () => {
    const r = windowConfigSchema.safeParse({ size_ms: 60_000, slide_ms: 7_000 });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.path).toEqual(['slide_ms']);
    expect(windowConfigSchema.safeParse({ size_ms: 60_000, sizee: 1 }).error?.issues[0]?.message).toMatch(/sizee/);
  });
});

describe('SlidingWindows idleness', () => {
  it('never treats a lagging partition as idle', () => {
    const w = new SlidingWindows(cfg);
    w.registerPartition(0);
    w.registerPartition(1);
    w.add(log(10_000, 1, null, '1.1.1.1'), 0, 0, 1_000);
    w.add(log(2_000, 1, null, '1.1.1.1'), 1, 0, 1_000);
    w.setLagging(1, true);
    w.onIdle(1_000 + cfg.idle_flush_ms * 10);
    expect(w.watermark).toBe(2_000);
    w.setLagging(1, false);
    w.onIdle(1_000 + cfg.idle_flush_ms * 10);
    expect(w.watermark).toBeGreaterThan(10_000);
  });
});
