import { describe, expect, it } from 'vitest';
import { createUnivariateDetector, restoreUnivariateDetector, univariateDetectorNames } from '../detectors/index.js';
import { IsolationForest } from '../detectors/isolation-forest.js';
import { rocAuc as auc } from '../detectors/roc-auc.js';
import { Random } from '../random.js';

/**
 * Every detector through the same checks (issue 4): deterministic for its inputs (and seed),
 * better than chance on labelled data, tolerant of features that go missing or appear, an
 * exact round trip through its saved form, and scores in [0, 1]. A detector added to
 * univariateDetectorNames() is checked without touching this file.
 */


/**
 * A request-count-like series (10 s windows): a slow wave, Poisson-like noise, labelled
 * one-window spikes and labelled bursts that hold a raised level for 12 windows.
 */
function series(seed: number, n = 900): { t: number[]; v: number[]; labels: number[] } {
  const r = new Random(seed, 3);
  const t: number[] = [];
  const v: number[] = [];
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    const base = 200 + 60 * Math.sin((2 * Math.PI * i) / 360);
    const spike = i > 100 && i % 97 === 0;
    const burst = i > 100 && i % 150 < 12;
    const extra = spike ? 6 * base : burst ? 1.5 * base : 0;
    t.push(1_700_000_000_000 + i * 10_000);
    v.push(Math.max(0, Math.round(base + Math.sqrt(base) * r.normal() + extra)));
    labels.push(spike || burst ? 1 : 0);
  }
  return { t, v, labels };
}

describe.each(univariateDetectorNames())('univariate detector %s', (name) => {
  const { t, v, labels } = series(1);
  const run = (values: readonly number[]): number[] => {
    const d = createUnivariateDetector(name);
    return values.map((x, i) => d.update(t[i] as number, x));
  };

  it('gives the same scores for the same series', () => {
    expect(run(v)).toEqual(run(v));
  });

  it('ranks labelled spikes and bursts above ordinary windows (AUC well above 0.5)', () => {
    const s = run(v);
    // Past any warm-up: scoring starts once the detector has a baseline.
    expect(auc(s.slice(100), labels.slice(100))).toBeGreaterThan(0.8);
  });

  it('keeps scores in [0, 1], whatever the values', () => {
    const d = createUnivariateDetector(name);
    const odd = [0, -5, 1e12, Number.NaN, Infinity, -Infinity, 3, 0, 7e-300];
    for (let i = 0; i < 300; i++) {
      const s = d.update(i * 10_000, i < 250 ? (v[i] as number) : (odd[i % odd.length] as number));
      expect(s).toBeGreaterThanOrEqual(0);
      expect(s).toBeLessThanOrEqual(1);
    }
  });

  it('takes a missing value (NaN) without learning it', () => {
    const a = createUnivariateDetector(name);
    const b = createUnivariateDetector(name);
    for (let i = 0; i < 200; i++) {
      a.update(t[i] as number, v[i] as number);
      b.update(t[i] as number, v[i] as number);
      if (i === 150) {
        const s = b.update(t[i] as number, Number.NaN);
        expect(s).toBeGreaterThanOrEqual(0);
        expect(s).toBeLessThanOrEqual(1);
      }
    }
    expect(b.score(t[200] as number, v[200] as number)).toBe(a.score(t[200] as number, v[200] as number));
  });

  it('round-trips through its saved form and keeps scoring identically', () => {
    const a = createUnivariateDetector(name);
    for (let i = 0; i < 300; i++) a.update(t[i] as number, v[i] as number);
    const b = restoreUnivariateDetector(name, JSON.parse(JSON.stringify(a.toJSON())));
    for (let i = 300; i < v.length; i++) expect(b.update(t[i] as number, v[i] as number)).toBe(a.update(t[i] as number, v[i] as number));
  });
});

describe('multivariate detector isolation_forest', () => {
  const r = new Random(5, 4);
  const rows: number[][] = [];
  const labels: number[] = [];
  for (let i = 0; i < 2_000; i++) {
    const anomaly = i % 50 === 9;
    rows.push(Array.from({ length: 5 }, () => (anomaly ? r.normal() * 5 : r.normal())));
    labels.push(anomaly ? 1 : 0);
  }

  it('gives the same scores for the same seed and rows', () => {
    expect(new IsolationForest({ seed: 3 }).fit(rows).score(rows)).toEqual(new IsolationForest({ seed: 3 }).fit(rows).score(rows));
  });

  it('ranks labelled anomalies above ordinary rows (AUC above 0.5)', () => {
    expect(auc(Array.from(new IsolationForest({ seed: 3 }).fit(rows).score(rows)), labels)).toBeGreaterThan(0.9);
  });

  it('takes features that go missing or appear, with scores in [0, 1]', () => {
    const f = new IsolationForest({ seed: 3 }).fit(rows);
    const changed = rows.slice(0, 100).map((row, i) => (i % 2 ? row.slice(0, 3) : [...row, 42]));
    for (const s of f.score(changed)) {
      expect(s).toBeGreaterThanOrEqual(0);
      expect(s).toBeLessThanOrEqual(1);
    }
  });

  it('round-trips through its saved form and scores identically', () => {
    const f = new IsolationForest({ seed: 3 }).fit(rows);
    expect(IsolationForest.fromJSON(JSON.parse(JSON.stringify(f.toJSON()))).score(rows)).toEqual(f.score(rows));
  });
});
