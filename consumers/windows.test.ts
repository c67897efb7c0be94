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

/** Requests, distinct IPs and requests in the newest slide of each (entity, window). */
function flatten(windows: ClosedWindow[]): Map<string, [number, number, number]> {
  const out = new Map<string, [number, number, number]>();
  for (const w of windows) for (const r of w.rows) out.set(`${r.entity_type}/${r.entity}/${r.window_start}`, [r.requests, r.unique_ips, r.requests_last_slide]);
  return out;
}

/**
 * Brute force: a record is late iff its pane [p, p+slide) ended at least `lateness` before the
 * largest event time seen before it; otherwise it counts in every window that contains it.
 */
function bruteForce(logs: RequestLog[]): Map<string, [number, number, number]> {
  const { size_ms: size, slide_ms: slide, allowed_lateness_ms: late } = cfg;
  const acc = new Map<string, { n: number; ips: Set<string>; newest: number }>();
  let wm = Number.NEGATIVE_INFINITY;
  for (const r of logs) {
    const t = r.timestamp;
    const pane = Math.floor(t / slide) * slide;
    const isLate = pane + slide + late <= wm;
    wm = Math.max(wm, t);
    if (isLate) continue;
    for (let s = pane; s > t - size; s -= slide) {
      const ents: [string, string][] = [['asn', String(r.asn)]];
      if (r.ja4) ents.push(['ja4', r.ja4], ['asn_ja4', `${r.asn}|${r.ja4}`]);
      for (const [ty, e] of ents) {
        const k = `${ty}/${e}/${s}`;
        const a = acc.get(k) ?? { n: 0, ips: new Set<string>(), newest: 0 };
        a.n++;
        a.ips.add(r.client_ip);
        if (pane === s + size - slide) a.newest++;
        acc.set(k, a);
      }
    }
  }
  return new Map([...acc].map(([k, v]) => [k, [v.n, v.ips.size, v.newest]]));
}

/** The records of one partition that brute force accepts (not late). */
function bruteForceAccepted(logs: RequestLog[]): RequestLog[] {
  const { slide_ms: slide, allowed_lateness_ms: late } = cfg;
  let wm = Number.NEGATIVE_INFINITY;
  const out: RequestLog[] = [];
  for (const r of logs) {
    const pane = Math.floor(r.timestamp / slide) * slide;
    if (!(pane + slide + late <= wm)) out.push(r);
    wm = Math.max(wm, r.timestamp);
  }
  return out;
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

  it('equals brute force with per-partition lateness on interleaved partitions', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ part: fc.integer({ min: 0, max: 2 }), dt: fc.integer({ min: 0, max: 1_500 }), back: fc.integer({ min: 0, max: 9_000 }),
            lateOne: fc.boolean(), asn: fc.integer({ min: 1, max: 3 }), ja4: fc.constantFrom(null, 'a', 'b'), ip: fc.integer({ min: 1, max: 5 }) }),
          { minLength: 1, maxLength: 300 },
        ),
        (steps) => {
          const clocks = [1_700_000_000_000, 1_700_000_003_000, 1_699_999_995_000];
          const byPart: RequestLog[][] = [[], [], []];
          const w = new SlidingWindows(cfg);
          for (const p of [0, 1, 2]) w.registerPartition(p);
          const closed: ClosedWindow[] = [];
          for (const s of steps) {
            clocks[s.part] = (clocks[s.part] as number) + s.dt;
            const t = s.lateOne ? (clocks[s.part] as number) - s.back : (clocks[s.part] as number);
            const r = log(t, s.asn, s.ja4, `10.0.0.${s.ip}`);
            (byPart[s.part] as RequestLog[]).push(r);
            w.add(r, s.part);
            closed.push(...w.drain());
          }
          closed.push(...w.closeAll());
          // Lateness is judged per partition; the windows then sum the partitions.
          const expected = new Map<string, [number, number, number]>();
          const ips = new Map<string, Set<string>>();
          for (const logs of byPart) {
            const accepted = bruteForceAccepted(logs);
            for (const r of accepted) {
              for (let ws = Math.floor(r.timestamp / cfg.slide_ms) * cfg.slide_ms; ws > r.timestamp - cfg.size_ms; ws -= cfg.slide_ms) {
                const ents: [string, string][] = [['asn', String(r.asn)]];
                if (r.ja4) ents.push(['ja4', r.ja4], ['asn_ja4', `${r.asn}|${r.ja4}`]);
                for (const [ty, e] of ents) {
                  const k = `${ty}/${e}/${ws}`;
                  const set = ips.get(k) ?? new Set<string>();
                  set.add(r.client_ip);
                  ips.set(k, set);
                  const prev = expected.get(k);
                  const newest = ws === Math.floor(r.timestamp / cfg.slide_ms) * cfg.slide_ms - cfg.size_ms + cfg.slide_ms ? 1 : 0;
                  expected.set(k, [(prev?.[0] ?? 0) + 1, set.size, (prev?.[2] ?? 0) + newest]);
                }
              }
            }
          }
          expect(flatten(closed)).toEqual(expected);
          expect(w.stats.accepted + w.stats.late).toBe(steps.length);
          expect(w.lateAtMerge).toBe(0);
        },
      ),
      { numRuns: 200 },
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
    const closed = w.drain().filter((c) => c.rows.length > 0);
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
    expect(w.add(log(9_000, 1, null, '1.1.1.1'))).toBe('replayed');
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
    expect(w.drain()).toEqual([]);
    w.setLagging(1, false);
    w.onIdle(1_000 + cfg.idle_flush_ms * 10);
    expect(w.watermark).toBe(10_000);
    // The windows with data, and the one between them without (so that detectors learn its zero).
    expect(w.drain().map((c) => [c.windowStart, c.rows.length > 0])).toEqual([
      [-2_000, true], [0, true], [2_000, true], [4_000, false], [6_000, true], [8_000, true], [10_000, true],
    ]);
  });
});

describe('SlidingWindows after a restart', () => {
  it('gives the same rows, top paths and busiest IP included, whichever window it restarts at', () => {
    // Skewed paths and IPs, more of each than the 16-entry summaries hold, so Space-Saving evicts
    // and the order in which panes are merged shows in top_paths and requests_per_ip_max.
    const c = windowConfigSchema.parse({ size_ms: 6_000, slide_ms: 1_000, allowed_lateness_ms: 0 });
    let seed = 7;
    const rand = (): number => ((seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0) / 2 ** 32);
    const logs: RequestLog[] = [];
    for (let t = 0; t < 40_000; t += 5) {
      const r = log(1_700_000_000_000 + t, 1 + Math.floor(rand() * 2), 'j', `10.0.0.${Math.floor(rand() ** 3 * 60)}`);
      r.path = `/p${Math.floor(rand() ** 2 * 80)}`;
      logs.push(r);
    }
    const rowsFrom = (horizon: number): Map<string, unknown> => {
      const w = new SlidingWindows(c);
      if (Number.isFinite(horizon)) w.restoreHorizon(horizon);
      // A restart re-reads from the oldest record the next window needs.
      for (const r of logs) if (r.timestamp >= horizon) w.add(r);
      const out = new Map<string, unknown>();
      for (const win of w.closeAll()) {
        for (const row of win.rows) if (win.windowStart >= horizon) out.set(`${row.entity_type}/${row.entity}/${row.window_start}`, row);
      }
      return out;
    };
    const all = rowsFrom(Number.NEGATIVE_INFINITY);
    for (const h of [1_700_000_013_000, 1_700_000_018_000, 1_700_000_021_000]) {
      const restarted = rowsFrom(h);
      expect(restarted.size).toBeGreaterThan(0);
      for (const [k, row] of restarted) expect(row, k).toEqual(all.get(k));
    }
  });
});

