import { describe, expect, it } from 'vitest';
import { plainWalkScores } from '../bench/forest-plain-walk.js';
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

  it('scores exactly as a plain walk of its saved trees, at every height, with missing and infinite values', () => {
    // The WebAssembly kernel against the definition (bench/forest-plain-walk.ts).
    const r = new Random(11, 2);
    // ψ from 4 to 1024: heights 2 to 10, below and above the kernel's three levels compared at once;
    // 2,000 features: rows are copied into the kernel a few hundred at a time.
    for (const [psi, features, n] of [[4, 1, 9], [8, 3, 257], [128, 5, 300], [256, 10, 1_001], [1_024, 17, 2_050], [64, 2_000, 1_200]] as const) {
      const { rows: train } = labelled(1_500, features, psi);
      const forest = new IsolationForest({ trees: 23, sampleSize: psi, seed: psi }).fit(train);
      // Some values sit exactly on a split of their feature, where >= and > part ways.
      const saved = forest.toJSON();
      const splits: number[][] = Array.from({ length: features }, () => []);
      const fb = Buffer.from(saved.feature, 'base64');
      const tb = Buffer.from(saved.threshold, 'base64');
      for (let k = 0; k < fb.length / 4; k++) {
        const t = tb.readDoubleLE(8 * k);
        if (Number.isFinite(t)) splits[fb.readInt32LE(4 * k)]?.push(t);
      }
      const x = new Float64Array(n * features);
      for (let i = 0; i < x.length; i++) {
        const u = r.next();
        const on = splits[i % features] as number[];
        x[i] =
          u < 0.05 ? Number.NaN
          : u < 0.07 ? Number.POSITIVE_INFINITY
          : u < 0.09 ? Number.NEGATIVE_INFINITY
          : u < 0.4 && on.length > 0 ? (on[Math.floor(r.next() * on.length)] as number)
          : r.normal() * 2;
      }
      const got = forest.scoreFlat(x, n);
      const want = plainWalkScores(saved, x, n);
      for (let i = 0; i < n; i++) expect(Object.is(got[i], want[i]), `psi ${psi}, row ${i}: ${got[i]} vs ${want[i]}`).toBe(true);
    }
  });

  it('normalises by c(n), the average unsuccessful-search path of a binary search tree', () => {
    expect(averagePathLength(1)).toBe(0);
    expect(averagePathLength(2)).toBe(1);
    // 2H(255) − 2·255/256 with H(i) ≈ ln i + γ (Liu et al. 2008).
    expect(averagePathLength(256)).toBeCloseTo(2 * (Math.log(255) + 0.5772156649015329) - (2 * 255) / 256, 12);
  });
});
