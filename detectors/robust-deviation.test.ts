import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createUnivariateDetector, univariateDetectorNames } from './index.js';
import { RobustDeviation } from './robust-deviation.js';

/** fast-check runs are seeded so a failure replays the same way. */
const FC = { seed: 20240601, numRuns: 200 };

function noisy(i: number): number {
  return 100 + ((i * 7919) % 21) - 10; // deterministic 90..110
}

describe('RobustDeviation', () => {
  it('scores 0 during warm-up, then flags a spike and not ordinary noise', () => {
    const d = new RobustDeviation({ history: 30, warmup: 10, noise_floor: 'poisson' });
    for (let i = 0; i < 9; i++) expect(d.update(i, noisy(i))).toBe(0);
    for (let i = 9; i < 40; i++) expect(d.update(i, noisy(i))).toBeLessThan(0.2);
    expect(d.score(40, 1000)).toBeGreaterThan(0.95);
    expect(d.score(40, 20)).toBe(0); // drops are not this detector's business
    const e = d.explain(1000);
    expect(e.typical).toBeGreaterThan(90);
    expect(e.typical).toBeLessThan(110);
  });

  it('round-trips through JSON and keeps scoring identically', () => {
    const d = new RobustDeviation({ history: 20, warmup: 5 });
    for (let i = 0; i < 33; i++) d.learn(i, noisy(i));
    const copy = RobustDeviation.fromJSON(JSON.parse(JSON.stringify(d.toJSON())));
    for (const v of [50, 100, 130, 400]) expect(copy.score(0, v)).toBe(d.score(0, v));
  });

  it('restores from either checkpoint form to the same state, which keeps learning and scoring identically', () => {
    const arb = fc.record({
      history: fc.integer({ min: 3, max: 12 }),
      warmup: fc.integer({ min: 1, max: 3 }),
      poisson: fc.boolean(),
      before: fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 50 }), fc.double({ min: -1e6, max: 1e6, noNaN: true })), { maxLength: 40 }),
      after: fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 50 })), { maxLength: 20 }),
    });
    fc.assert(
      fc.property(arb, ({ history, warmup, poisson, before, after }) => {
        const options = { history, warmup, noise_floor: poisson ? ('poisson' as const) : ('none' as const) };
        const d = new RobustDeviation(options);
        for (const v of before) d.learn(0, v);
        const full = RobustDeviation.fromJSON(JSON.parse(JSON.stringify(d.toJSON())));
        const baseline = d.baselineJSON();
        expect(baseline.values).toHaveLength(Math.min(baseline.count, history));
        const lean = RobustDeviation.fromBaselineJSON(options, JSON.parse(JSON.stringify(baseline)));
        for (const copy of [full, lean]) {
          expect(copy.toJSON()).toEqual(d.toJSON());
          expect(copy.quiet).toBe(d.quiet);
          expect(copy.ready).toBe(d.ready);
        }
        for (const v of [...after, 1e4]) {
          for (const copy of [full, lean]) expect(copy.explain(v)).toEqual(d.explain(v));
          for (const x of [d, full, lean]) x.learn(0, v);
        }
        expect(lean.toJSON()).toEqual(d.toJSON());
      }),
      FC,
    );
  });

  it('learns −0 as 0, which JSON can carry', () => {
    const d = new RobustDeviation({ history: 3, warmup: 1 });
    d.learn(0, -0);
    expect(Object.is(d.toJSON().values[0], 0)).toBe(true);
  });

  it.each<[string, unknown, RegExp]>([
    ['a non-object', null, /RobustDeviation.fromJSON: expected an object/],
    ['bad options', { options: { history: 2 }, values: [], count: 0, next: 0 }, /bad 'options': history/],
    ['a ring of the wrong length', { options: { history: 5, warmup: 1 }, values: [1, 2], count: 2, next: 2 }, /'values' has 2 items, expected 5/],
    ['a negative count', { options: { history: 3, warmup: 1 }, values: [0, 0, 0], count: -1, next: 0 }, /'count' must be a non-negative integer/],
    ['a next out of step with count', { options: { history: 3, warmup: 1 }, values: [1, 2, 3], count: 4, next: 0 }, /'next' must be count mod history \(1\)/],
    ['a non-finite value', { options: { history: 3, warmup: 1 }, values: [1, 'x', 3], count: 3, next: 0 }, /values\[1\] must be a finite number/],
  ])('fromJSON rejects %s with a TypeError', (_name, input, message) => {
    expect(() => RobustDeviation.fromJSON(input)).toThrow(TypeError);
    expect(() => RobustDeviation.fromJSON(input)).toThrow(message);
  });

  it('fromBaselineJSON names the field it was given and rejects unknown keys', () => {
    expect(() => RobustDeviation.fromBaselineJSON({ history: 3, warmup: 1 }, { count: 1, values: [1], next: 1 }, "state: 'requests'")).toThrow(
      /^state: 'requests': unknown key 'next'$/,
    );
    expect(() => RobustDeviation.fromBaselineJSON({ history: 3, warmup: 1 }, { count: 4, values: [1] })).toThrow(/'values' has 1 items, expected 3 for count 4 and history 3/);
  });

  it('is reachable through the univariate contract', () => {
    expect(univariateDetectorNames()).toContain('robust_deviation');
    const d = createUnivariateDetector('robust_deviation', { warmup: 3, history: 10 });
    const scores = [1, 1, 1, 1, 50].map((v, i) => d.update(i * 1000, v));
    for (const s of scores) expect(s).toBeGreaterThanOrEqual(0);
    expect(scores.at(-1)).toBeGreaterThan(0.9);
    expect(() => createUnivariateDetector('nope')).toThrow(/robust_deviation/);
  });

  it('learns a value n times at once exactly as n single learns', () => {
    for (const n of [1, 3, 7, 8, 9, 30]) {
      const a = new RobustDeviation({ history: 8, warmup: 3 });
      const b = new RobustDeviation({ history: 8, warmup: 3 });
      for (let i = 0; i < 5; i++) {
        a.learn(0, 10 + i);
        b.learn(0, 10 + i);
      }
      b.learnRepeated(0, 0, n);
      for (let i = 0; i < n; i++) a.learn(0, 0);
      expect(b.toJSON()).toEqual(a.toJSON());
      expect(b.explain(20)).toEqual(a.explain(20));
    }
  });
});

