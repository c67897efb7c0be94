import { describe, expect, it } from 'vitest';
import { RobustEwma } from './robust-ewma.js';

describe('RobustEwma', () => {
  it('flags a burst, which barely moves its baseline, and takes a new steady level as normal after a while', () => {
    const d = new RobustEwma();
    for (let i = 0; i < 50; i++) d.update(i, 100 + (i % 5) - 2);
    const before = d.location;
    expect(d.update(50, 400)).toBeGreaterThan(0.8);
    // Winsorised: one burst value moves the location by at most alpha · clip_z scales.
    expect(d.location - before).toBeLessThanOrEqual(0.1 * 3 * Math.sqrt(before) * 1.001);
    // A client that settles at 150 is flagged at first, then becomes normal.
    const first = d.update(51, 150);
    for (let i = 52; i < 150; i++) d.update(i, 150 + (i % 5) - 2);
    expect(first).toBeGreaterThan(0.3);
    expect(d.score(150, 152)).toBeLessThan(0.05);
  });

  it('round-trips through JSON and rejects a malformed state', () => {
    const a = new RobustEwma({ alpha: 0.2 });
    for (let i = 0; i < 30; i++) a.update(i, 10 + i);
    const b = RobustEwma.fromJSON(JSON.parse(JSON.stringify(a)));
    expect(b.update(31, 99)).toBe(a.update(31, 99));
    expect(() => RobustEwma.fromJSON({ ...a.toJSON(), mad: -1 })).toThrow(/'mad'/);
    expect(() => RobustEwma.fromJSON({ ...a.toJSON(), options: { alpha: 2 } })).toThrow(/alpha/);
  });
});
