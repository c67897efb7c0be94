import { describe, expect, it } from 'vitest';
import type { WindowAggregateRow } from '../consumers/aggregates.js';
import { EntityAggregate } from '../consumers/aggregates.js';
import { EntityScorer, entityScorerSchema } from './entity-scorer.js';
import { createUnivariateDetector, univariateDetectorNames } from './index.js';
import { RobustDeviation } from './robust-deviation.js';

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

  it('is reachable through the univariate contract', () => {
    expect(univariateDetectorNames()).toContain('robust_deviation');
    const d = createUnivariateDetector('robust_deviation', { warmup: 3, history: 10 });
    const scores = [1, 1, 1, 1, 50].map((v, i) => d.update(i * 1000, v));
    for (const s of scores) expect(s).toBeGreaterThanOrEqual(0);
    expect(scores.at(-1)).toBeGreaterThan(0.9);
    expect(() => createUnivariateDetector('nope')).toThrow(/robust_deviation/);
  });
});

function row(entity: string, start: number, requests: number, ips = 10): WindowAggregateRow {
  const r = new EntityAggregate('asn').toRow(entity, start, start + 60_000);
  return { ...r, requests, unique_ips: ips, requests_per_ip_max: Math.ceil(requests / ips) };
}

describe('EntityScorer', () => {
  const config = entityScorerSchema.parse({ robust_deviation: { history: 30, warmup: 10, noise_floor: 'poisson' } });

  it('flags a burst with reasons, does not learn it, and clears when it ends', () => {
    const s = new EntityScorer(config, 'test');
    let t = 0;
    const windowAt = (req: number, ips = 10) => s.scoreWindow({ windowStart: t, windowEnd: t + 60_000, rows: [row('64512', t, req, ips)] });
    for (let i = 0; i < 20; i++, t += 10_000) windowAt(noisy(i));
    const burst = windowAt(2000, 400);
    t += 10_000;
    expect(burst).toHaveLength(1);
    const v = burst[0]!;
    expect(v.anomalous).toBe(true);
    expect(v.score).toBeGreaterThan(0.95);
    expect(v.reasons[0]).toMatch(/requests 2000 in 60 s vs typical \d+(\.\d)? .*x typical/);
    expect(v.reasons.some((r) => r.startsWith('unique_ips 400 vs typical 10'))).toBe(true);
    // Still anomalous in the next window: the burst was not learned.
    expect(windowAt(2000, 400)[0]!.anomalous).toBe(true);
    t += 10_000;
    expect(windowAt(105)[0]!.anomalous).toBe(false);
  });

  it('keeps at most max_entities_per_type entities, counting evictions', () => {
    const long = entityScorerSchema.parse({ robust_deviation: { history: 1000, warmup: 10 }, max_entities_per_type: 100 });
    const s = new EntityScorer(long, 'test');
    for (let i = 0; i < 250; i++) s.scoreWindow({ windowStart: i, windowEnd: i + 60_000, rows: [row(String(i), i, 5)] });
    expect(s.size.asn).toBeLessThanOrEqual(100);
    expect(s.evictions).toBeGreaterThanOrEqual(150);
  });

  it('never evicts a heavy entity under a flood of fresh one-request entities', () => {
    const small = entityScorerSchema.parse({ robust_deviation: { history: 100, warmup: 10 }, max_entities_per_type: 100 });
    const s = new EntityScorer(small, 'test');
    for (let w = 0; w < 30; w++) {
      const rows = [row('a-heavy', w * 10_000, 500)];
      for (let i = 0; i < 150; i++) rows.push(row(`fresh-${w}-${i}`, w * 10_000, 1));
      rows.sort((a, b) => (a.entity < b.entity ? -1 : 1));
      s.scoreWindow({ windowStart: w * 10_000, windowEnd: w * 10_000 + 60_000, rows });
    }
    expect(s.evictions).toBeGreaterThan(1000);
    // Its baseline survived: it is past warm-up, so its window gets a verdict.
    const v = s.scoreWindow({ windowStart: 300_000, windowEnd: 360_000, rows: [row('a-heavy', 300_000, 500)] });
    expect(v.map((x) => x.entity)).toEqual(['a-heavy']);
  });

  it('drops entities whose whole history has gone quiet', () => {
    const s = new EntityScorer(config, 'test');
    s.scoreWindow({ windowStart: 0, windowEnd: 60_000, rows: [row('1', 0, 5)] });
    for (let i = 1; i <= 30; i++) s.scoreWindow({ windowStart: i, windowEnd: i + 60_000, rows: [] });
    expect(s.size.asn).toBe(0);
    expect(s.evictions).toBe(0);
  });
});
