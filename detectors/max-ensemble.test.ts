import { describe, expect, it } from 'vitest';
import { createUnivariateDetector, restoreUnivariateDetector } from './index.js';
import { MaxEnsemble } from './max-ensemble.js';

describe('max_ensemble', () => {
  it('scores each value as the largest score of its members, which all learn every value', () => {
    const e = createUnivariateDetector('max_ensemble');
    const a = createUnivariateDetector('robust_deviation', { noise_floor: 'poisson' });
    const b = createUnivariateDetector('cusum');
    for (let i = 0; i < 400; i++) {
      const v = 300 + 17 * Math.sin(i) + (i > 300 && i < 320 ? 90 : 0) + (i === 350 ? 2_000 : 0);
      expect(e.update(i * 10_000, v)).toBe(Math.max(a.update(i * 10_000, v), b.update(i * 10_000, v)));
    }
  });

  it('takes its members by name with their options, and rejects a malformed saved state', () => {
    const e = createUnivariateDetector('max_ensemble', { members: { robust_ewma: { alpha: 0.3 } } });
    expect((e.toJSON() as { members: { name: string }[] }).members.map((m) => m.name)).toEqual(['robust_ewma']);
    expect(() => restoreUnivariateDetector('max_ensemble', { members: [{ state: {} }] })).toThrow(/members\[0\]/);
    expect(() => restoreUnivariateDetector('max_ensemble', { members: [{ name: 'nope', state: {} }] })).toThrow(/unknown detector 'nope'/);
    expect(() => new MaxEnsemble([])).toThrow(/at least one member/);
  });
});
