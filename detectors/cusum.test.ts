import { describe, expect, it } from 'vitest';
import { Cusum } from './cusum.js';
import { RobustEwma } from './robust-ewma.js';

/** Counts around `level` with a deterministic ±√level wiggle. */
const noisy = (i: number, level: number): number => Math.round(level + Math.sqrt(level) * Math.sin(i * 1.7));

describe('Cusum', () => {
  it('flags a sustained small rise that a per-window deviation test scores low, then drains after it', () => {
    const c = new Cusum();
    const e = new RobustEwma({ alpha: 0.02, warmup: 20 });
    for (let i = 0; i < 100; i++) {
      c.update(i, noisy(i, 400));
      e.update(i, noisy(i, 400));
    }
    // +3 scales (3·√400 = 60 requests) per window, for 12 windows.
    const cusum: number[] = [];
    const ewma: number[] = [];
    for (let i = 100; i < 112; i++) {
      cusum.push(c.update(i, noisy(i, 460)));
      ewma.push(e.update(i, noisy(i, 460)));
    }
    // Evidence builds up: the second half of the rise is flagged, where each window alone is not.
    const late = cusum.slice(6);
    expect(Math.max(...late)).toBeGreaterThan(0.8);
    expect(late.filter((x) => x > 0.5).length).toBeGreaterThanOrEqual(4);
    expect(Math.max(...ewma)).toBeLessThan(0.3);
    // Back to normal: ordinary windows are not flagged while the statistic drains.
    const after: number[] = [];
    for (let i = 112; i < 160; i++) after.push(c.update(i, noisy(i, 400)));
    expect(Math.max(...after.slice(5))).toBeLessThan(0.5);
    expect(after[after.length - 1]).toBe(0);
  });

  it('gives an isolated spike less than a sustained rise', () => {
    const c = new Cusum();
    for (let i = 0; i < 100; i++) c.update(i, noisy(i, 400));
    const spike = c.update(100, 4_000);
    expect(spike).toBeLessThan(0.6);
  });

  it('round-trips through JSON and rejects a malformed state', () => {
    const a = new Cusum({ h: 4 });
    for (let i = 0; i < 60; i++) a.update(i, noisy(i, 50) + (i > 40 ? 20 : 0));
    const b = Cusum.fromJSON(JSON.parse(JSON.stringify(a)));
    for (let i = 60; i < 80; i++) expect(b.update(i, noisy(i, 70))).toBe(a.update(i, noisy(i, 70)));
    expect(() => Cusum.fromJSON({ ...a.toJSON(), s: -1 })).toThrow(/'s'/);
    expect(() => Cusum.fromJSON({ ...a.toJSON(), baseline: { options: {}, count: 1, location: 'x', mad: 0 } })).toThrow(/'location'/);
  });
});
