import { describe, expect, it } from 'vitest';
import { Random } from '../random.js';
import { IsolationForest, averagePathLength } from './isolation-forest.js';
import { rocAuc as auc } from './roc-auc.js';


/** Gaussian rows with 1% uniform outliers spread over a wider box, and their labels. */
function labelled(n: number, features: number, seed: number): { rows: number[][]; labels: number[] } {
  const r = new Random(seed, 1);
  const rows: number[][] = [];
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const outlier = i % 100 === 7;
    rows.push(Array.from({ length: features }, () => (outlier ? r.next() * 12 - 6 : r.normal())));
    labels.push(outlier ? 1 : 0);
  }
  return { rows, labels };
}

describe('IsolationForest', () => {
  const { rows, labels } = labelled(4_000, 6, 3);

  it('separates labelled anomalies (AUC well above 0.5) with scores in (0, 1]', () => {
    const scores = new IsolationForest({ seed: 1 }).fit(rows).score(rows);
    expect(auc(scores, labels)).toBeGreaterThan(0.95);
    for (const s of scores) {
      expect(s).toBeGreaterThan(0);
      expect(s).toBeLessThanOrEqual(1);
    }
    // Typical rows sit near 0.5 or below; the planted anomalies well above.
    const mean = (want: number): number => {
      let sum = 0;
      let n = 0;
      labels.forEach((l, i) => {
        if (l === want) {
          sum += scores[i] as number;
          n++;
        }
      });
      return sum / n;
    };
    expect(mean(0)).toBeLessThan(0.5);
    expect(mean(1)).toBeGreaterThan(0.6);
  });

  it('is deterministic for a seed, and the seed matters', () => {
    const a = new IsolationForest({ seed: 42 }).fit(rows).score(rows);
    const b = new IsolationForest({ seed: 42 }).fit(rows).score(rows);
    const c = new IsolationForest({ seed: 43 }).fit(rows).score(rows);
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
  });

  it('saves and restores to a model that scores identically', () => {
    const f = new IsolationForest({ trees: 37, sampleSize: 128, seed: 5 }).fit(rows);
    const saved = JSON.parse(JSON.stringify(f.toJSON())) as unknown;
    const g = IsolationForest.fromJSON(saved);
    expect(g.trees).toBe(37);
    expect(g.sampleSize).toBe(128);
    expect(g.score(rows)).toEqual(f.score(rows));
  });

  it('takes missing features (NaN or a short row) and ignores extra ones', () => {
    const f = new IsolationForest({ seed: 9 }).fit(rows);
    const base = f.score(rows.slice(0, 50));
    const extra = f.score(rows.slice(0, 50).map((r) => [...r, 1e9, -1e9]));
    expect(extra).toEqual(base);
    const missing = f.score([[Number.NaN, 0, 0, 0, 0, 0], [0, 0, 0], []]);
    for (const s of missing) {
      expect(Number.isFinite(s)).toBe(true);
      expect(s).toBeGreaterThan(0);
      expect(s).toBeLessThanOrEqual(1);
    }
    // Missing values in training rows are skipped by the splits, not taken as numbers.
    const holed = rows.map((r, i) => (i % 10 === 0 ? [Number.NaN, ...r.slice(1)] : r));
    expect(auc(new IsolationForest({ seed: 1 }).fit(holed).score(rows), labels)).toBeGreaterThan(0.95);
  });

  it('fits rows that cannot be split, and small sets', () => {
    const same = Array.from({ length: 300 }, () => [1, 2, 3]);
    const s = new IsolationForest({ seed: 1 }).fit(same).score([[1, 2, 3], [9, 9, 9]]);
    expect(s[0]).toBeCloseTo(s[1] as number, 12); // nothing to tell them apart with
    const two = new IsolationForest({ seed: 1 }).fit([[0], [1]]).score([[0], [0.5], [1]]);
    for (const x of two) expect(x).toBeGreaterThan(0);
    expect(() => new IsolationForest().fit([[1]])).toThrow(/at least 2 rows/);
    expect(() => new IsolationForest().fit([[1, 2], [3]])).toThrow(/row 1 has 1 features/);
    expect(() => new IsolationForest({ trees: 0 })).toThrow(/trees/);
    expect(() => new IsolationForest().score([[1]])).toThrow(/fit the forest/);
  });

  it('rejects a malformed saved model with a TypeError naming the field', () => {
    const saved = new IsolationForest({ trees: 3, seed: 1 }).fit(rows).toJSON();
    expect(() => IsolationForest.fromJSON({ ...saved, v: 2 })).toThrow(/unsupported version/);
    expect(() => IsolationForest.fromJSON({ ...saved, threshold: 'AAAA' })).toThrow(/'threshold' must decode to/);
    expect(() => IsolationForest.fromJSON({ ...saved, height: 3 })).toThrow(/'height' 3 does not match/);
    expect(() => IsolationForest.fromJSON({ ...saved, features: 1 })).toThrow(/'feature' \d+ is \d+, outside/);
  });

  it('normalises by c(n), the average unsuccessful-search path of a binary search tree', () => {
    expect(averagePathLength(1)).toBe(0);
    expect(averagePathLength(2)).toBe(1);
    // 2H(255) − 2·255/256 with H(i) ≈ ln i + γ (Liu et al. 2008).
    expect(averagePathLength(256)).toBeCloseTo(2 * (Math.log(255) + 0.5772156649015329) - (2 * 255) / 256, 12);
  });
});
