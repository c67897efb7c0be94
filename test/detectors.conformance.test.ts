import { describe, expect, it } from 'vitest';
import { createUnivariateDetector, restoreUnivariateDetector, univariateDetectorNames } from '../detectors/index.js';
import { EntityAggregate, type WindowAggregateRow } from '../consumers/aggregates.js';
import { EntityScorer, entityScorerSchema } from '../detectors/entity-scorer.js';
import { IsolationForest } from '../detectors/isolation-forest.js';
import { PopulationScorer } from '../detectors/population.js';
import type { Verdict } from '../detectors/verdict.js';
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

/**
 * Entity windows of a mixed population: people (spread over IPs, assets, few auth failures)
 * and labelled bots of three shapes (credential stuffing, scraping, a flood of one URL).
 */
function entityWindows(seed: number, windows: number, perWindow = 60): { rows: WindowAggregateRow[]; labels: number[] }[] {
  const r = new Random(seed, 11);
  const out: { rows: WindowAggregateRow[]; labels: number[] }[] = [];
  for (let w = 0; w < windows; w++) {
    const start = w * 10_000;
    const rows: WindowAggregateRow[] = [];
    const labels: number[] = [];
    for (let e = 0; e < perWindow; e++) {
      const base = new EntityAggregate('asn').toRow(String(64_000 + e), start, start + 60_000, 0);
      const people = Math.round((20 + e * 2) * (0.9 + 0.2 * r.next()));
      const kind = w >= windows - 10 && e % 15 === 3 ? 1 + (e % 3) : 0;
      const requests = kind ? people * 6 : people;
      const ips = kind ? 8 : Math.max(1, Math.round(people / 3));
      rows.push({
        ...base,
        requests,
        unique_ips: ips,
        requests_per_ip_max: Math.ceil((requests / ips) * (1 + r.next())),
        unique_paths: kind === 2 ? requests : Math.max(1, Math.round(requests * 0.4)),
        unique_user_agents: kind ? 1 : Math.max(1, Math.round(ips * 0.8)),
        status_401: kind === 1 ? Math.round(requests * 0.9) : r.next() < 0.2 ? 1 : 0,
        post_requests: kind === 1 ? requests : Math.round(requests * 0.03 * r.next()),
        static_requests: kind ? 0 : Math.round(requests * (0.3 + 0.2 * r.next())),
        http1_requests: kind ? requests : Math.round(requests * 0.05 * r.next()),
        status_5xx: kind === 3 ? Math.round(requests * 0.3) : 0,
        top_path_requests: [kind === 3 ? requests : Math.ceil(requests * (0.1 + 0.1 * r.next()))],
      });
      labels.push(kind ? 1 : 0);
    }
    out.push({ rows, labels });
  }
  return out;
}

describe('population detector (isolation forest over entity windows)', () => {
  const data = entityWindows(2, 40);
  const run = (windows: typeof data, scorer = new PopulationScorer({ seed: 3, minTraining: 200 })): { scores: number[]; labels: number[] } => {
    const scores: number[] = [];
    const labels: number[] = [];
    for (const w of windows) {
      const s = scorer.score(w.rows);
      if (scorer.ready('asn')) {
        w.rows.forEach((row, i) => {
          scores.push(s.get(row)?.score ?? Number.NaN);
          labels.push(w.labels[i] as number);
        });
      }
      scorer.learn(w.rows[0]?.window_start ?? 0, w.rows, new Set(w.rows.filter((_, i) => w.labels[i])));
    }
    return { scores, labels };
  };

  it('gives the same scores for the same seed and windows', () => {
    expect(run(data).scores).toEqual(run(data).scores);
  });

  it('ranks labelled bots above people (AUC above 0.5), with scores in [0, 1]', () => {
    const { scores, labels } = run(data);
    expect(auc(scores, labels)).toBeGreaterThan(0.9);
    for (const s of scores) {
      expect(s).toBeGreaterThanOrEqual(0);
      expect(s).toBeLessThanOrEqual(1);
    }
  });

  it('takes aggregates whose fields go missing (an older producer) or appear, with scores in [0, 1]', () => {
    const scorer = new PopulationScorer({ seed: 3, minTraining: 200 });
    run(data.slice(0, 30), scorer);
    const odd = (data[30] as (typeof data)[number]).rows.map((row, i) => {
      const copy: Record<string, unknown> = { ...row, extra_field: 7 };
      if (i % 2) delete copy.top_path_requests;
      if (i % 3) copy.challenge_failed = undefined;
      return copy as unknown as WindowAggregateRow;
    });
    for (const s of scorer.score(odd).values()) {
      expect(s.score).toBeGreaterThanOrEqual(0);
      expect(s.score).toBeLessThanOrEqual(1);
    }
  });

  it('round-trips through its changelog records and scores identically', () => {
    const a = new PopulationScorer({ seed: 3, minTraining: 200 });
    run(data.slice(0, 25), a);
    const b = new PopulationScorer({ seed: 3, minTraining: 200 });
    for (const c of a.takeChanges()) if (c.value !== null) b.restore(c.key, JSON.parse(JSON.stringify(c.value)) as string);
    b.completeRestore();
    expect(run(data.slice(25), b).scores).toEqual(run(data.slice(25), a).scores);
  });
});

describe('entity scorer (the ensemble of volume, population and shift, with its policy)', () => {
  const config = entityScorerSchema.parse({ robust_deviation: { history: 30, warmup: 10, noise_floor: 'poisson', relative_floor: 0.1 }, population: { min_training: 200 } });
  const data = entityWindows(4, 40);
  const run = (): { verdicts: Verdict[]; labels: number[] } => {
    const s = new EntityScorer(config, 'conformance');
    const verdicts: Verdict[] = [];
    const labels: number[] = [];
    for (const w of data) {
      const vs = s.scoreWindow({ windowStart: w.rows[0]?.window_start ?? 0, windowEnd: (w.rows[0]?.window_start ?? 0) + 60_000, rows: w.rows });
      for (const v of vs) {
        verdicts.push(v);
        labels.push(w.labels[w.rows.findIndex((r) => r.entity === v.entity)] as number);
      }
    }
    return { verdicts, labels };
  };

  it('gives the same verdicts for the same seed and windows', () => {
    expect(run().verdicts).toEqual(run().verdicts);
  });

  it('ranks labelled bots above people (AUC above 0.5), flags them with reasons, scores in [0, 1]', () => {
    const { verdicts, labels } = run();
    expect(auc(verdicts.map((v) => v.score), labels)).toBeGreaterThan(0.9);
    for (const v of verdicts) {
      expect(v.score).toBeGreaterThanOrEqual(0);
      expect(v.score).toBeLessThanOrEqual(1);
      for (const d of Object.values(v.detectors)) expect(d >= 0 && d <= 1).toBe(true);
    }
    const flagged = verdicts.filter((v) => v.anomalous);
    expect(flagged.length).toBeGreaterThan(0);
    for (const v of flagged) expect(v.reasons.length).toBeGreaterThanOrEqual(2);
    // No person is flagged.
    expect(flagged.every((v) => labels[verdicts.indexOf(v)] === 1)).toBe(true);
  });
});
