import { describe, expect, it } from 'vitest';
import { EntityAggregate, type WindowAggregateRow } from '../consumers/aggregates.js';
import { Random } from '../random.js';
import { POPULATION_FEATURES, PopulationScorer } from './population.js';

/** A person-like ASN window: requests spread over many IPs, few auth failures, some static assets. */
function person(r: Random, entity: string, start: number): WindowAggregateRow {
  const requests = Math.round(50 * Math.exp(r.normal() * 0.8)) + 5;
  const ips = Math.max(1, Math.round(requests / (2 + r.next() * 3)));
  return {
    ...new EntityAggregate('asn').toRow(entity, start, start + 60_000, 0),
    requests,
    unique_ips: ips,
    requests_per_ip_max: Math.ceil((requests / ips) * (1 + r.next())),
    unique_paths: Math.max(1, Math.round(requests * (0.3 + 0.3 * r.next()))),
    unique_user_agents: Math.max(1, Math.round(ips * 0.8)),
    status_401: r.next() < 0.1 ? 1 : 0,
    post_requests: Math.round(requests * 0.05 * r.next()),
    static_requests: Math.round(requests * (0.3 + 0.2 * r.next())),
    http1_requests: Math.round(requests * 0.1 * r.next()),
  };
}

/** A credential-stuffing ASN window: few IPs hammering a login with POSTs, mostly 401s, no assets. */
function stuffer(entity: string, start: number): WindowAggregateRow {
  return {
    ...new EntityAggregate('asn').toRow(entity, start, start + 60_000, 0),
    requests: 900,
    unique_ips: 6,
    requests_per_ip_max: 200,
    unique_paths: 2,
    unique_user_agents: 1,
    status_401: 800,
    post_requests: 880,
    static_requests: 0,
    http1_requests: 900,
  };
}

function windows(seed: number, n: number, entities = 300): WindowAggregateRow[][] {
  const r = new Random(seed, 8);
  return Array.from({ length: n }, (_, w) => Array.from({ length: entities }, (_, e) => person(r, String(64_000 + e), w * 10_000)));
}

function start(rows: readonly WindowAggregateRow[]): number {
  return (rows[0] as WindowAggregateRow).window_start;
}

describe('PopulationScorer', () => {
  it('scores a credential-stuffing entity far above the population, with the features that set it apart', () => {
    const s = new PopulationScorer({ seed: 1 });
    const ws = windows(1, 12);
    for (const w of ws.slice(0, 11)) s.learn(start(w), w);
    expect(s.ready('asn')).toBe(true);
    const last = [...(ws[11] as WindowAggregateRow[]), stuffer('65000', 110_000)];
    const scores = s.score(last);
    const bot = scores.get(last[last.length - 1] as WindowAggregateRow);
    expect(bot?.score).toBeGreaterThan(0.8);
    expect(bot?.reasons.map((x) => x.feature)).toContain('auth_failure_share');
    const people = (ws[11] as WindowAggregateRow[]).map((r) => scores.get(r)?.score as number).sort((a, b) => a - b);
    // Calibrated: about 1 in 1,600 ordinary windows reaches 0.8; the 95th percentile is far below.
    expect(people[Math.floor(people.length * 0.95)]).toBeLessThan(0.5);
    for (const x of scores.values()) {
      expect(x.score).toBeGreaterThanOrEqual(0);
      expect(x.score).toBeLessThanOrEqual(1);
    }
  });

  it('is deterministic for a seed', () => {
    const run = (): number[] => {
      const s = new PopulationScorer({ seed: 4, perWindow: 100 });
      const ws = windows(2, 10);
      for (const w of ws.slice(0, 9)) s.learn(start(w), w);
      return [...s.score(ws[9] as WindowAggregateRow[]).values()].map((x) => x.score);
    };
    expect(run()).toEqual(run());
  });

  it('learns nothing from flagged windows, so a repeated attack stays an outlier', () => {
    const ws = windows(3, 30, 100);
    const flaggedRun = new PopulationScorer({ seed: 2, minTraining: 100 });
    const naiveRun = new PopulationScorer({ seed: 2, minTraining: 100 });
    let lastFlagged = 0;
    let lastNaive = 0;
    for (let i = 0; i < ws.length; i++) {
      // A quarter of the population turns into stuffers after window 5.
      const rows = (ws[i] as WindowAggregateRow[]).map((r, e) => (i > 5 && e < 25 ? stuffer(r.entity, r.window_start) : r));
      const bots = new Set(rows.filter((r) => r.status_401 > 100));
      if (flaggedRun.ready('asn')) lastFlagged = flaggedRun.score(rows).get(rows[0] as WindowAggregateRow)?.score ?? 0;
      if (naiveRun.ready('asn')) lastNaive = naiveRun.score(rows).get(rows[0] as WindowAggregateRow)?.score ?? 0;
      flaggedRun.learn(start(rows), rows, bots);
      naiveRun.learn(start(rows), rows);
    }
    expect(lastFlagged).toBeGreaterThan(0.8);
    // Fed its own attack, the population model takes it as a normal cluster.
    expect(lastNaive).toBeLessThan(lastFlagged);
  });

  it('keeps a bounded reservoir', () => {
    const s = new PopulationScorer({ windows: 5, perWindow: 20, minTraining: 20 });
    for (const w of windows(4, 40, 100)) s.learn(start(w), w);
    const m = (s as unknown as { models: Map<string, { reservoir: { vectors: Float64Array }[] }> }).models.get('asn');
    // The last 5 windows, plus those the installed or pending fit was made from (refit every 6).
    expect(m?.reservoir.length).toBeGreaterThanOrEqual(5);
    expect(m?.reservoir.length).toBeLessThanOrEqual(5 + 6);
    for (const w of m?.reservoir ?? []) expect(w.vectors.length).toBeLessThanOrEqual(20 * POPULATION_FEATURES.length);
  });
});
