import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { EntityType, WindowAggregateRow } from '../consumers/aggregates.js';
import { EntityAggregate } from '../consumers/aggregates.js';
import type { ClosedWindow } from '../consumers/windows.js';
import { EntityScorer, entityScorerSchema, type EntityChange, type EntityStateJSON } from './entity-scorer.js';
import type { Verdict } from './verdict.js';

/** fast-check runs are seeded so a failure replays the same way. */
const FC = { seed: 20240601, numRuns: 150 };

function noisy(i: number): number {
  return 100 + ((i * 7919) % 21) - 10; // deterministic 90..110
}

function row(entity: string, start: number, requests: number, ips = 10, type: EntityType = 'asn', authFailures = 0): WindowAggregateRow {
  // Steady traffic: a sixth of the window in its newest slide.
  const r = new EntityAggregate(type).toRow(entity, start, start + 60_000, Math.round(requests / 6));
  return {
    ...r,
    requests,
    unique_ips: ips,
    requests_per_ip_max: Math.ceil(requests / ips),
    requests_per_ip_mean: requests / ips,
    status_401: authFailures,
    unique_paths: Math.min(requests, 3 + (requests % 7)),
  };
}

function windowOf(start: number, rows: WindowAggregateRow[]): ClosedWindow {
  return { windowStart: start, windowEnd: start + 60_000, rows };
}

/** A compacted changelog topic: the last value of each key; a tombstone removes the key. */
function compact(topic: Map<string, EntityChange>, changes: readonly EntityChange[]): void {
  for (const c of changes) {
    const key = `${c.type}\u0000${c.entity}`;
    topic.delete(key); // a rewritten key moves to the end, as on the log
    if (c.state !== null) topic.set(key, JSON.parse(JSON.stringify(c)) as EntityChange);
  }
}

/** Changes as a map, for comparing two scorers whose maps iterate in different orders. */
function byKey(changes: readonly EntityChange[]): Map<string, EntityStateJSON | null> {
  return new Map(changes.map((c) => [`${c.type}\u0000${c.entity}`, c.state]));
}

describe('EntityScorer', () => {
  const config = entityScorerSchema.parse({ robust_deviation: { history: 30, warmup: 10, noise_floor: 'poisson' } });

  it('flags a burst with reasons, does not learn it, and clears when it ends', () => {
    const s = new EntityScorer(config, 'test');
    let t = 0;
    const windowAt = (req: number, ips = 10, auth = 0) => s.scoreWindow({ windowStart: t, windowEnd: t + 60_000, rows: [row('64512', t, req, ips, 'asn', auth)] });
    for (let i = 0; i < 20; i++, t += 10_000) windowAt(noisy(i));
    // Credential stuffing: 20x the requests, nine in ten failing auth.
    const burst = windowAt(2000, 400, 1800);
    t += 10_000;
    expect(burst).toHaveLength(1);
    const v = burst[0]!;
    expect(v.anomalous).toBe(true);
    expect(v.score).toBeGreaterThan(0.95);
    expect(v.reasons[0]).toMatch(/requests 2000 in 60 s vs typical \d+(\.\d)? .*x typical/);
    expect(v.reasons.some((r) => r.startsWith('unique_ips 400 vs typical 10'))).toBe(true);
    expect(v.reasons).toContain('auth_failure_share 90% vs typical 0.0%');
    expect(v.detectors).toMatchObject({ volume: expect.any(Number), shift: expect.any(Number) });
    expect(v.scope).toEqual({ asn: 64512 });
    // Still anomalous in the next window: the burst was not learned.
    expect(windowAt(2000, 400, 1800)[0]!.anomalous).toBe(true);
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
    for (let i = 1; i <= 29; i++) s.scoreWindow(windowOf(i * 10_000, []));
    expect(s.size.asn).toBe(1);
    s.scoreWindow(windowOf(300_000, []));
    expect(s.size.asn).toBe(0);
    expect(s.evictions).toBe(0);
  });
});

describe('EntityScorer decisions', () => {
  const config = entityScorerSchema.parse({
    robust_deviation: { history: 30, warmup: 10, noise_floor: 'poisson', relative_floor: 0.1 },
    policy: { adapt_after_windows: 12 },
    // A population model that fits after a few windows of these small tests.
    population: { min_training: 8, min_requests: 5, refit_every: 2 },
  });
  /** Credential stuffing: 300 requests from 10 IPs, POSTs over HTTP/1.1, 270 failing auth, no assets. */
  const stuffing = (entity: string, t: number, type: EntityType = 'asn'): WindowAggregateRow => ({
    ...row(entity, t, 300, 10, type, 270),
    post_requests: 295,
    http1_requests: 300,
  });

  /** Forty ordinary networks of different sizes: the population a newcomer is compared with. */
  const people = (t: number): WindowAggregateRow[] =>
    Array.from({ length: 40 }, (_, e) => {
      const n = 30 + e * 3 + (((t / 10_000) * (e + 1)) % 11);
      // People load assets, mostly over HTTP/2, and mistype passwords now and then.
      return { ...row(String(64_700 + e), t, n, Math.ceil(n / 3), 'asn', (e + t / 10_000) % 3), static_requests: Math.round(n * 0.4), http1_requests: e % 4, post_requests: e % 3 };
    });

  it('gives no verdicts before the stream has been watched for warm-up windows, then judges new entities against zeros', () => {
    const s = new EntityScorer(config, 'test');
    // A newcomer in the second window: the scorer has no baseline yet.
    s.scoreWindow(windowOf(0, people(0)));
    expect(s.scoreWindow(windowOf(10_000, [...people(10_000), stuffing('65001', 10_000)]))).toEqual([]);
    // 30 windows of 40 networks: a population large enough to call a newcomer an outlier.
    for (let i = 2; i < 30; i++) s.scoreWindow(windowOf(i * 10_000, people(i * 10_000)));
    // Watched for 30 windows: an entity never seen before has a history of zeros, and is judged at once.
    const vs = s.scoreWindow(windowOf(300_000, [...people(300_000), stuffing('65002', 300_000)]));
    expect(vs.filter((v) => v.anomalous).map((v) => v.entity)).toEqual(['65002']);
    const fresh = vs.find((v) => v.entity === '65002');
    expect(fresh?.reasons[0]).toMatch(/vs typical 0 .*from a typical of 0/);
    expect(fresh?.reasons.some((r) => /^population: outlier among active asn entities this window \(score 0\.\d+\): \w+/.test(r))).toBe(true);
  });

  it('catches a burst in the slide it starts (the onset view), which the whole window dilutes below the threshold', () => {
    /** 60 requests a window from 30 IPs, 10 in each slide; from window 30 a bot adds 45 failing logins from 2 IPs in the newest slide. */
    const run = (onsetVisible: boolean): Verdict | undefined => {
      const s = new EntityScorer(config, 'test');
      for (let i = 0; i < 30; i++) s.scoreWindow(windowOf(i * 10_000, [...people(i * 10_000), row('64999', i * 10_000, 60, 30)]));
      const t = 300_000;
      const burst = { ...row('64999', t, 105, 32, 'asn', 45), requests_last_slide: onsetVisible ? 55 : 10 };
      return s.scoreWindow(windowOf(t, [...people(t), burst])).find((v) => v.entity === '64999');
    };
    const v = run(true);
    expect(v?.anomalous).toBe(true);
    expect(v?.detectors.onset).toBeGreaterThan(v?.detectors['robust_deviation.requests'] as number);
    expect(v?.features.requests_last_slide).toBe(55);
    expect(v?.typical.requests_last_slide).toBe(10);
    expect(v?.reasons.some((r) => /^onset: 55 requests in the last 10 s vs typical 10 \(median of last 30 slides, spread [\d.]+\): 5\.5x typical, \+\d+\.\d robust deviations$/.test(r))).toBe(true);
    // The same window with the burst spread evenly: the window alone does not reach the threshold.
    const diluted = run(false);
    expect(diluted?.anomalous).toBe(false);
    expect(diluted?.detectors.onset).toBeUndefined();
  });

  it('adapts to a new client that stays steady: flagged at first, its level accepted after adapt_after_windows', () => {
    const run = (adaptAfter: number): boolean[] => {
      const s = new EntityScorer(entityScorerSchema.parse({ ...config, policy: { adapt_after_windows: adaptAfter } }), 'test');
      // 30 windows of 40 networks: a population large enough to call a newcomer an outlier.
      for (let i = 0; i < 30; i++) s.scoreWindow(windowOf(i * 10_000, people(i * 10_000)));
      const flags: boolean[] = [];
      for (let i = 30; i < 60; i++) {
        const vs = s.scoreWindow(windowOf(i * 10_000, [...people(i * 10_000), stuffing('65003', i * 10_000)]));
        const v = vs.find((x) => x.entity === '65003');
        flags.push(v?.anomalous ?? false);
        if (i === 30 + adaptAfter - 1) expect(v?.reasons.join(' | ')).toMatch(/level held for 12 anomalous windows: accepted as this entity's new normal/);
      }
      return flags;
    };
    const flags = run(12);
    // Flagged for 11 windows; the 12th accepts the level; never flagged again.
    expect(flags.slice(0, 11).every(Boolean)).toBe(true);
    expect(flags.slice(11).some(Boolean)).toBe(false);
    // Without adaptation it stays flagged.
    expect(run(0).every(Boolean)).toBe(true);
  });

  it('does not flag a flash crowd (every network and browser 4x, per-IP load up), but flags a bot inside it', () => {
    const s = new EntityScorer(config, 'test');
    const windowAt = (i: number, rise: number, bot: boolean): Verdict[] => {
      const t = i * 10_000;
      const rows: WindowAggregateRow[] = [];
      for (let a = 0; a < 8; a++) {
        for (const j of ['chrome', 'safari']) {
          const n = Math.round((40 + ((i * (a + 3)) % 9)) * rise);
          // People in a crowd load more pages each: requests per IP rise too.
          rows.push(row(`${64_600 + a}|${j}`, t, n, Math.round(n / (2 * Math.sqrt(rise))), 'asn_ja4'));
        }
      }
      if (bot) rows.push(stuffing('64601|python', t, 'asn_ja4'));
      else rows.push(row('64601|python', t, 3, 1, 'asn_ja4'));
      return s.scoreWindow(windowOf(t, rows));
    };
    for (let i = 0; i < 20; i++) windowAt(i, 1, false);
    for (let i = 20; i < 26; i++) {
      const vs = windowAt(i, 4, i >= 23);
      const flagged = vs.filter((v) => v.anomalous).map((v) => v.entity);
      expect(flagged).toEqual(i >= 23 ? ['64601|python'] : []);
      const chrome = vs.find((v) => v.entity === '64603|chrome');
      expect(chrome?.features.expected_rise).toBeGreaterThan(3);
      expect(chrome?.reasons.some((r) => r.startsWith('surge: the traffic around it'))).toBe(true);
    }
  });
});

describe('EntityScorer checkpoints', () => {
  const small = entityScorerSchema.parse({
    robust_deviation: { history: 8, warmup: 3, noise_floor: 'poisson' },
    policy: { threshold: 0.5, min_requests: 5 },
    // A small population model that fits within a few windows, so checkpoints carry its samples and schedule.
    population: { windows: 4, per_window: 12, refit_every: 3, min_training: 4, min_requests: 1 },
    max_entities_per_type: 10,
  });

  it('snapshots one entity as versioned JSON that restores to the same snapshot', () => {
    const a = new EntityScorer(small, 'test');
    for (let i = 0; i < 11; i++) a.scoreWindow(windowOf(i * 10_000, [row('64512', i * 10_000, 40 + i, 4, 'asn', i % 3)]));
    const snap = a.entityState('asn', '64512');
    expect(snap).toMatchObject({ v: 4, seq: 0, last: 100_000, streak: 0, requests: { count: 11 }, slide: { count: 11 } });
    expect(snap?.requests.values).toHaveLength(8); // a full ring
    expect(Object.keys(snap?.secondary ?? {})).toEqual(['unique_ips', 'requests_per_ip_max', 'requests_per_ip_mean', 'auth_failure_share', 'post_share', 'unique_paths']);
    expect(a.entityState('asn', 'nobody')).toBeNull();
    const b = new EntityScorer(small, 'test');
    b.restoreEntity('asn', '64512', JSON.parse(JSON.stringify(snap)));
    expect(b.entityState('asn', '64512')).toEqual(snap);
    expect(b.size).toEqual({ asn: 1, ja4: 0, asn_ja4: 0 });
    expect(b.takeChanges()).toEqual([]); // restored state is what the changelog holds already
  });

  it('keeps a young baseline small: only the values learned so far', () => {
    const a = new EntityScorer(small, 'test');
    a.scoreWindow(windowOf(0, [row('t13d_x', 0, 1, 1, 'ja4')]));
    const [change] = a.takeChanges();
    expect(change).toMatchObject({ type: 'ja4', entity: 't13d_x', state: { mass: 1, requests: { count: 1, values: [1] } } });
  });

  it('reports every changed entity once per checkpoint, and tombstones for evicted and quiet-dropped ones', () => {
    const s = new EntityScorer(small, 'test');
    s.scoreWindow(windowOf(0, [row('heavy', 0, 500), row('quiet', 0, 5)]));
    expect(s.takeChanges().map((c) => c.entity)).toEqual(['heavy', 'quiet']);
    expect(s.takeChanges()).toEqual([]);
    // `quiet` learns a zero per window and is dropped once its 8-value ring is all zeros.
    let t = 10_000;
    for (let i = 0; i < 7; i++, t += 10_000) s.scoreWindow(windowOf(t, [row('heavy', t, 500)]));
    expect(s.takeChanges().find((c) => c.entity === 'quiet')?.state).not.toBeNull();
    s.scoreWindow(windowOf(t, [row('heavy', t, 500)]));
    t += 10_000;
    expect(byKey(s.takeChanges()).get('asn\u0000quiet')).toBeNull();
    expect(s.size.asn).toBe(1);
    // Eleven light entities push the type past its cap of 10: the lightest tenth goes, `heavy` stays.
    const fresh = Array.from({ length: 11 }, (_, i) => row(`fresh-${String(i).padStart(2, '0')}`, t, 1));
    s.scoreWindow(windowOf(t, [row('heavy', t, 500), ...fresh]));
    const changes = byKey(s.takeChanges());
    const tombstones = [...changes].filter(([, st]) => st === null).map(([k]) => k.split('\u0000')[1]);
    expect(s.evictions).toBe(2);
    // Equal masses: the earliest admitted go first.
    expect(tombstones).toEqual(['fresh-00', 'fresh-01']);
    expect(changes.get('asn\u0000heavy')).not.toBeNull();
    expect(s.size.asn).toBe(10);
  });

  it('restores within max_entities_per_type, evicting the lightest with tombstones', () => {
    const a = new EntityScorer(small, 'test');
    a.scoreWindow(windowOf(0, Array.from({ length: 10 }, (_, i) => row(`e${i}`, 0, 10 * (i + 1)))));
    const snaps = a.takeChanges();
    const b = new EntityScorer(small, 'test');
    b.scoreWindow(windowOf(0, [row('local', 0, 1_000)]));
    b.takeChanges();
    for (const c of snaps) b.restoreEntity(c.type, c.entity, c.state);
    // Eleven entities for a cap of 10: a tenth of the cap goes, the two lightest.
    expect(b.size.asn).toBe(9);
    expect(b.evictions).toBe(2);
    expect(b.takeChanges()).toEqual([
      { type: 'asn', entity: 'e0', state: null },
      { type: 'asn', entity: 'e1', state: null },
    ]);
    expect(b.entityState('asn', 'local')).not.toBeNull();
  });

  it('evicts the same entities after a restore in reverse order, where masses tie', () => {
    const a = new EntityScorer(small, 'test');
    a.scoreWindow(windowOf(0, [row('heavy', 0, 500), ...Array.from({ length: 9 }, (_, i) => row(`f${i}`, 0, 1))]));
    const b = new EntityScorer(small, 'test');
    for (const c of a.takeChanges().reverse()) b.restoreEntity(c.type, c.entity, c.state);
    const next = windowOf(10_000, [row('heavy', 10_000, 500), row('g0', 10_000, 1), row('g1', 10_000, 1)]);
    expect(b.scoreWindow(next)).toEqual(a.scoreWindow(next));
    const gone = (s: EntityScorer) => [...byKey(s.takeChanges())].filter(([, st]) => st === null).map(([k]) => k);
    const [goneA, goneB] = [gone(a), gone(b)];
    expect(goneA).toEqual(['asn\u0000f0', 'asn\u0000f1']);
    expect(goneB).toEqual(goneA);
  });

  it('forgets an entity without a tombstone, discarding its pending change', () => {
    const s = new EntityScorer(small, 'test');
    s.scoreWindow(windowOf(0, [row('a', 0, 50), row('b', 0, 50)]));
    expect(s.forgetEntity('asn', 'a')).toBe(true);
    expect(s.forgetEntity('asn', 'a')).toBe(false);
    expect(s.takeChanges().map((c) => c.entity)).toEqual(['b']);
    expect(s.size.asn).toBe(1);
  });

  it.each<[string, (s: EntityStateJSON) => unknown, RegExp]>([
    ['a non-object', () => 42, /expected an object/],
    ['another version', (s) => ({ ...s, v: 5 }), /unsupported version 'v': 5 \(expected 1 to 4\)/],
    ['a version 3 state without last', (s) => ({ ...s, last: undefined }), /'last' must be an integer/],
    ['a negative streak', (s) => ({ ...s, streak: -1 }), /'streak' must be a non-negative integer/],
    ['a streak in a version 2 state', (s) => ({ ...s, v: 2 }), /unknown key 'streak' in a v2 state/],
    ['an unknown key', (s) => ({ ...s, extra: 1 }), /unknown key 'extra'/],
    ['a negative seq', (s) => ({ ...s, seq: -1 }), /'seq' must be a non-negative integer/],
    ['a mass of null (NaN in JSON)', (s) => ({ ...s, mass: null }), /'mass' must be a finite number/],
    ['a count that is not an integer', (s) => ({ ...s, requests: { ...s.requests, count: 1.5 } }), /'requests': 'count' must be a non-negative integer/],
    ['a ring of another history', (s) => ({ ...s, requests: { count: 20, values: new Array(12).fill(1) } }), /'requests': 'values' has 12 items, expected 8 for count 20 and history 8/],
    ['a non-finite value', (s) => ({ ...s, requests: { ...s.requests, values: [1, null, 1] } }), /'requests': values\[1\] must be a finite number/],
    ['an unknown secondary feature', (s) => ({ ...s, secondary: { ...s.secondary, bytes: s.requests } }), /unknown secondary feature 'bytes'/],
    ['a malformed secondary baseline', (s) => ({ ...s, secondary: { ...s.secondary, unique_ips: [] } }), /'secondary.unique_ips': expected an object/],
  ])('restoreEntity rejects %s with a TypeError', (_name, mutate, message) => {
    const a = new EntityScorer(small, 'test');
    for (let i = 0; i < 3; i++) a.scoreWindow(windowOf(i, [row('x', i, 30)]));
    const bad = JSON.parse(JSON.stringify(mutate(a.entityState('asn', 'x') as EntityStateJSON))) as unknown;
    const b = new EntityScorer(small, 'test');
    expect(() => b.restoreEntity('asn', 'x', bad)).toThrow(TypeError);
    expect(() => b.restoreEntity('asn', 'x', bad)).toThrow(message);
    expect(b.size.asn).toBe(0);
  });

  it('restores a state written before a secondary feature existed, with an empty baseline for it', () => {
    const a = new EntityScorer(small, 'test');
    for (let i = 0; i < 3; i++) a.scoreWindow(windowOf(i, [row('x', i, 30)]));
    // As if unique_paths had been added after the state was written.
    const { unique_paths: _up, ...older } = (a.entityState('asn', 'x') as EntityStateJSON).secondary;
    const b = new EntityScorer(small, 'test');
    b.restoreEntity('asn', 'x', { ...a.entityState('asn', 'x'), secondary: older });
    expect(b.entityState('asn', 'x')?.secondary.unique_paths).toEqual({ count: 0, values: [] });
    expect(b.entityState('asn', 'x')?.secondary.post_share).toEqual(a.entityState('asn', 'x')?.secondary.post_share);
  });

  it('keeps no change set when told to (replay never checkpoints)', () => {
    const s = new EntityScorer(small, 'test', { trackChanges: false });
    s.scoreWindow(windowOf(0, [row('a', 0, 50)]));
    expect(() => s.takeChanges()).toThrow(/trackChanges/);
    expect(s.entityState('asn', 'a')).toMatchObject({ v: 4, mass: 50, last: 0 });
  });

  it('rejects an unknown entity type', () => {
    const s = new EntityScorer(small, 'test');
    expect(() => s.restoreEntity('ip' as EntityType, 'x', {})).toThrow(/unknown entity type "ip"; known: asn, ja4, asn_ja4/);
    expect(() => s.entityState('ip' as EntityType, 'x')).toThrow(TypeError);
  });

  /**
   * The guarantee the changelog relies on: scorer A checkpoints (takeChanges) at arbitrary
   * windows into a compacted topic; at a cut, a fresh scorer B restores every key of the topic,
   * in any order, and from then on both give the same verdicts and the same changes. The
   * traffic mixes steady entities, bursts, one-request floods of equal mass (eviction ties)
   * and entities that vanish long enough to be dropped as quiet.
   */
  it('restored from a compacted changelog, continues exactly like the scorer it came from', () => {
    const types: EntityType[] = ['asn', 'ja4', 'asn_ja4'];
    const rowArb = fc.record({
      type: fc.constantFrom(...types),
      entity: fc.integer({ min: 0, max: 24 }),
      requests: fc.oneof(fc.integer({ min: 1, max: 2 }), fc.integer({ min: 20, max: 60 }), fc.integer({ min: 200, max: 3000 })),
      ips: fc.integer({ min: 1, max: 40 }),
      auth: fc.integer({ min: 0, max: 20 }),
    });
    const windowArb = fc.record({ rows: fc.array(rowArb, { maxLength: 40 }), checkpoint: fc.boolean() });
    const arb = fc.array(windowArb, { minLength: 1, maxLength: 40 }).chain((ws) => fc.tuple(fc.constant(ws), fc.integer({ min: 0, max: ws.length }), fc.integer()));
    fc.assert(
      fc.property(arb, ([windows, cut, seed]) => {
        const closed = windows.map((w, i) => {
          const start = i * 10_000;
          const seen = new Set<string>();
          const rows: WindowAggregateRow[] = [];
          for (const r of w.rows) {
            const entity = r.type === 'asn' ? String(64_500 + r.entity) : r.type === 'ja4' ? `t13d_${r.entity}` : `${64_500 + (r.entity % 5)}|t13d_${r.entity}`;
            if (seen.has(`${r.type}/${entity}`)) continue;
            seen.add(`${r.type}/${entity}`);
            rows.push(row(entity, start, r.requests, Math.min(r.ips, r.requests), r.type, Math.min(r.auth, r.requests)));
          }
          return windowOf(start, rows);
        });
        const a = new EntityScorer(small, 'test');
        const topic = new Map<string, EntityChange>();
        // Scorer-level records (its start, the population's samples and fit schedule), compacted too.
        const shared = new Map<string, string>();
        const compactShared = (): void => {
          for (const c of a.takeScorerChanges()) {
            shared.delete(c.key);
            if (c.value !== null) shared.set(c.key, c.value);
          }
        };
        for (let i = 0; i < cut; i++) {
          a.scoreWindow(closed[i] as ClosedWindow);
          if (windows[i]?.checkpoint) {
            compact(topic, a.takeChanges());
            compactShared();
          }
        }
        compact(topic, a.takeChanges()); // the checkpoint at the cut
        compactShared();
        // Restore in a shuffled order: a restored scorer must not depend on the order of the log.
        const entries = [...topic.values()];
        let x = seed >>> 0 || 1;
        for (let i = entries.length - 1; i > 0; i--) {
          x = (Math.imul(x, 1_103_515_245) + 12_345) >>> 0;
          const j = x % (i + 1);
          [entries[i], entries[j]] = [entries[j] as EntityChange, entries[i] as EntityChange];
        }
        const b = new EntityScorer(small, 'test');
        for (const c of entries) b.restoreEntity(c.type, c.entity, c.state);
        for (const [key, value] of [...shared].reverse()) b.restoreScorer(key, value);
        b.completeRestore();
        expect(b.size).toEqual(a.size);
        expect(b.takeChanges()).toEqual([]);
        for (let i = cut; i < closed.length; i++) {
          const va: Verdict[] = a.scoreWindow(closed[i] as ClosedWindow);
          const vb: Verdict[] = b.scoreWindow(closed[i] as ClosedWindow);
          expect(vb).toEqual(va);
          expect(byKey(b.takeChanges())).toEqual(byKey(a.takeChanges()));
          expect(b.takeScorerChanges()).toEqual(a.takeScorerChanges());
        }
        expect(b.size).toEqual(a.size);
      }),
      FC,
    );
  });

  it('restores the population model and its fit schedule exactly, at every cut, with a fit pending or not', () => {
    const types: EntityType[] = ['asn', 'ja4', 'asn_ja4'];
    const w = (i: number): ClosedWindow =>
      windowOf(
        i * 10_000,
        types.flatMap((type, k) =>
          Array.from({ length: 9 }, (_, e) => {
            const entity = type === 'asn' ? String(64_500 + e) : type === 'ja4' ? `t13d_${e}` : `${64_500 + e}|t13d_${e}`;
            // Entity 0 turns into a credential stuffer at window 8: flagged, so left out of the population.
            const bot = e === 0 && i >= 8;
            return row(entity, i * 10_000, bot ? 900 : 30 + e + ((i * (e + k)) % 7), bot ? 5 : 10, type, bot ? 800 : 0);
          }),
        ),
      );
    let flagged = 0;
    for (let cut = 1; cut < 12; cut++) {
      const a = new EntityScorer(small, 'test');
      const entities = new Map<string, EntityChange>();
      const shared = new Map<string, string>();
      for (let i = 0; i < cut; i++) {
        a.scoreWindow(w(i));
        compact(entities, a.takeChanges());
        for (const c of a.takeScorerChanges()) {
          shared.delete(c.key);
          if (c.value !== null) shared.set(c.key, c.value);
        }
      }
      const b = new EntityScorer(small, 'test');
      for (const c of entities.values()) b.restoreEntity(c.type, c.entity, c.state);
      for (const [key, value] of shared) b.restoreScorer(key, value);
      b.completeRestore();
      for (let i = cut; i < 14; i++) {
        const va = a.scoreWindow(w(i));
        expect(b.scoreWindow(w(i))).toEqual(va);
        expect(b.takeScorerChanges()).toEqual(a.takeScorerChanges());
        flagged += va.filter((v) => v.anomalous && v.detectors.population !== undefined).length;
      }
    }
    // The comparison covered windows scored by a restored population model, and flagged ones.
    expect(flagged).toBeGreaterThan(0);
  });

  it('changes, and so checkpoints, only the entities of a window; absent windows are learned as zeros when one comes back', () => {
    const s = new EntityScorer(small, 'test');
    s.scoreWindow(windowOf(0, [row('steady', 0, 40), row('sparse', 0, 30)]));
    s.takeChanges();
    for (let i = 1; i <= 5; i++) {
      s.scoreWindow(windowOf(i * 10_000, [row('steady', i * 10_000, 40)]));
      expect(s.takeChanges().map((c) => c.entity)).toEqual(['steady']);
    }
    s.scoreWindow(windowOf(60_000, [row('steady', 60_000, 40), row('sparse', 60_000, 35)]));
    const sparse = byKey(s.takeChanges()).get('asn\u0000sparse');
    // Window by window it would have learned 30 and five zeros (35 against that is flagged, so not
    // learned); its mass decayed by 0.9 a window.
    expect(sparse?.requests).toEqual({ count: 6, values: [30, 0, 0, 0, 0, 0] });
    let mass = 30;
    for (let i = 0; i < 6; i++) mass *= 0.9;
    expect(sparse?.mass).toBeCloseTo(mass + 35, 9);
    expect(sparse?.last).toBe(60_000);
  });

  it('reads version 1 states (no last) as current at the window before the next one scored', () => {
    const a = new EntityScorer(small, 'test');
    a.scoreWindow(windowOf(0, [row('x', 0, 40)]));
    const [c] = a.takeChanges();
    const { last: _last, streak: _streak, slide: _slide, ...rest } = c?.state as EntityStateJSON;
    const b = new EntityScorer(small, 'test');
    b.restoreEntity('asn', 'x', { ...rest, v: 1 });
    const next = windowOf(10_000, [row('x', 10_000, 41)]);
    expect(b.scoreWindow(next)).toEqual(a.scoreWindow(next));
    // Everything but the onset baseline, which v1 did not have: it starts empty.
    const { slide: slideB, ...restB } = b.entityState('asn', 'x') as EntityStateJSON;
    const { slide: slideA, ...restA } = a.entityState('asn', 'x') as EntityStateJSON;
    expect(restB).toEqual(restA);
    expect([slideA?.count, slideB?.count]).toEqual([2, 1]);
  });

  it('reads version 3 states (no onset baseline) with an empty one, and rejects a v4 state without it', () => {
    const a = new EntityScorer(small, 'test');
    for (let i = 0; i < 4; i++) a.scoreWindow(windowOf(i * 10_000, [row('x', i * 10_000, 40)]));
    const { slide: _slide, ...v3 } = a.entityState('asn', 'x') as EntityStateJSON;
    const b = new EntityScorer(small, 'test');
    b.restoreEntity('asn', 'x', { ...v3, v: 3 });
    expect(b.entityState('asn', 'x')).toEqual({ ...v3, v: 4, slide: { count: 0, values: [] } });
    expect(() => b.restoreEntity('asn', 'x', { ...v3, v: 4 })).toThrow("'slide' is missing from a v4 state");
    expect(() => b.restoreEntity('asn', 'x', { ...v3, v: 3, slide: v3.requests })).toThrow("unknown key 'slide' in a v3 state");
  });
});

