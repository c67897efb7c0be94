import { isIP } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { validateRequestLog } from '../schemas/codec.js';
import { requestLogType } from '../schemas/index.js';
import {
  DEFAULT_SCENARIOS,
  SCENARIO_NAMES,
  SCENARIOS,
  WARM_UP_MS,
  benignPairRate,
  burstContains,
  generateTraffic,
  scenarioLabels,
  type LabelledEvent,
  type TrafficOptions,
} from './traffic.js';

const START = Date.UTC(2026, 10, 1, 12, 0, 0);
const MIN = 60_000;

function opts(over: Partial<TrafficOptions> = {}): TrafficOptions {
  return { seed: 42, startMs: START, durationMs: 10 * MIN, baseRps: 300, scenarios: [...DEFAULT_SCENARIOS], ...over };
}

function take(o: TrafficOptions, n = Infinity): LabelledEvent[] {
  const out: LabelledEvent[] = [];
  for (const e of generateTraffic(o)) {
    if (out.length >= n) break;
    out.push(e);
  }
  return out;
}

const pair = (asn: number, ja4: string | null): string => `${asn}|${ja4}`;

// One full default run with every scenario, shared by the ground-truth checks.
const fullOpts = opts({ scenarios: [...SCENARIO_NAMES] });
const full = take(fullOpts);
const fullBursts = scenarioLabels(fullOpts);

describe('generateTraffic', () => {
  it('is deterministic for a seed and differs between seeds', () => {
    const a = take(opts(), 10_000);
    const b = take(opts(), 10_000);
    expect(a).toHaveLength(10_000);
    expect(b).toEqual(a);
    const c = take(opts({ seed: 43 }), 10_000);
    const differing = c.filter((e, i) => JSON.stringify(e) !== JSON.stringify(a[i])).length;
    expect(differing).toBeGreaterThan(9_000);
  });

  it('bounds the disorder of event time by jitterMs, with a few percent of late arrivals', () => {
    for (const jitterMs of [2000, 500]) {
      const events = take(opts({ durationMs: 3 * MIN, jitterMs }));
      let maxSeen = -Infinity;
      let late = 0;
      let worst = 0;
      for (const { log } of events) {
        if (log.timestamp < maxSeen) {
          late++;
          worst = Math.max(worst, maxSeen - log.timestamp);
        }
        maxSeen = Math.max(maxSeen, log.timestamp);
      }
      expect(worst).toBeLessThanOrEqual(jitterMs);
      expect(worst).toBeGreaterThan(jitterMs / 2);
      expect(late / events.length).toBeGreaterThan(0.01);
      expect(late / events.length).toBeLessThan(0.08);
    }
    const ordered = take(opts({ durationMs: MIN, jitterMs: 0 }));
    for (let i = 1; i < ordered.length; i++) expect(ordered[i]!.log.timestamp).toBeGreaterThanOrEqual(ordered[i - 1]!.log.timestamp);
  });

  it('keeps every event inside the run, with unique request ids', () => {
    const ids = new Set(full.map((e) => e.log.request_id));
    expect(ids.size).toBe(full.length);
    const outside = full.filter((e) => e.log.timestamp < START || e.log.timestamp >= START + fullOpts.durationMs);
    expect(outside).toEqual([]);
  });

  it('labels each attack request inside its window and from its asn and ja4', () => {
    const attacks = fullBursts.filter((b) => b.kind === 'attack');
    expect(attacks.map((b) => b.name)).toEqual([...DEFAULT_SCENARIOS]);
    for (const b of attacks) {
      const mine = full.filter((e) => e.label === b.name);
      expect(mine.length, b.name).toBeGreaterThan(500);
      const stray = mine.filter(
        ({ log }) => log.timestamp < b.startMs || log.timestamp >= b.endMs || log.asn !== b.match.asn || log.ja4 !== b.match.ja4,
      );
      expect(stray, b.name).toEqual([]);
      // Warm-up: the detector needs ~5 min of history; attacks last 1–3 min.
      expect(b.startMs - START).toBeGreaterThanOrEqual(WARM_UP_MS);
      expect(b.endMs - b.startMs).toBeGreaterThanOrEqual(MIN);
      expect(b.endMs - b.startMs).toBeLessThanOrEqual(3 * MIN);
    }
    const names = new Set(full.map((e) => e.label));
    expect([...names].sort((x, y) => String(x).localeCompare(String(y)))).toEqual([...DEFAULT_SCENARIOS, null].sort((x, y) => String(x).localeCompare(String(y))));
  });

  it('sends each attack from a pair with benign history, at ≥ 8× its prior rate', () => {
    for (const b of fullBursts.filter((x) => x.kind === 'attack')) {
      const key = pair(b.match.asn!, b.match.ja4!);
      const before = full.filter((e) => e.label === null && e.log.timestamp < b.startMs && pair(e.log.asn, e.log.ja4) === key).length;
      expect(before, `${b.name}: benign ${key} before the attack`).toBeGreaterThan(10);
      const priorRate = before / (b.startMs - START);
      const attackRate = full.filter((e) => e.label === b.name).length / (b.endMs - b.startMs);
      expect(attackRate / priorRate, b.name).toBeGreaterThanOrEqual(8);
      // The empirical prior agrees with the world's expected pair rate.
      const expected = (benignPairRate(b.match.asn!, b.match.ja4!, 300) * (b.startMs - START)) / 1000;
      expect(before).toBeGreaterThan(expected * 0.5);
      expect(before).toBeLessThan(expected * 1.6);
    }
  });

  it('makes the flash crowd a benign, proportional surge of browser traffic', () => {
    const fc = fullBursts.find((b) => b.name === 'flash_crowd')!;
    expect(fc.kind).toBe('benign_surge');
    expect(fc.match).toEqual({});
    // The plateau (after the 20 s ramp) against the minute before the surge.
    const inPlateau = full.filter((e) => e.log.timestamp >= fc.startMs + 20_000 && e.log.timestamp < fc.endMs - 20_000 && e.label === null);
    const beforeSurge = full.filter((e) => e.log.timestamp >= fc.startMs - MIN && e.log.timestamp < fc.startMs && e.label === null);
    const ratio = inPlateau.length / (fc.endMs - fc.startMs - 40_000) / (beforeSurge.length / MIN);
    expect(ratio).toBeGreaterThan(3);
    expect(ratio).toBeLessThan(5);
  });

  it('makes the push notification a surge of one mobile network, with its usual human profile', () => {
    const o = opts({ scenarios: ['push_notification'], seed: 11 });
    const [p] = scenarioLabels(o);
    expect(p!.kind).toBe('benign_surge');
    expect(p!.match).toEqual({ asn: SCENARIOS.push_notification.asn });
    expect(p!.endMs - p!.startMs).toBe(90_000);
    const events = take(o);
    expect(events.every((e) => e.label === null)).toBe(true);
    const asn = p!.match.asn!;
    const inside = (e: LabelledEvent): boolean => e.log.timestamp >= p!.startMs + 10_000 && e.log.timestamp < p!.endMs - 10_000;
    const before = (e: LabelledEvent): boolean => e.log.timestamp >= p!.startMs - 2 * MIN && e.log.timestamp < p!.startMs;
    const rate = (f: (e: LabelledEvent) => boolean, ms: number): number => events.filter(f).length / ms;
    const mine = (e: LabelledEvent): boolean => e.log.asn === asn;
    // The network rises about fivefold on its plateau (its few non-human clients do not); the others do not move.
    const ratio = rate((e) => mine(e) && inside(e), 70_000) / rate((e) => mine(e) && before(e), 2 * MIN);
    expect(ratio).toBeGreaterThan(3.8);
    expect(ratio).toBeLessThan(6);
    const others = rate((e) => !mine(e) && inside(e), 70_000) / rate((e) => !mine(e) && before(e), 2 * MIN);
    expect(others).toBeGreaterThan(0.85);
    expect(others).toBeLessThan(1.15);
    // One big network: about 5% of all benign requests before the surge.
    const share = events.filter((e) => mine(e) && before(e)).length / events.filter(before).length;
    expect(share).toBeGreaterThan(0.03);
    // A human profile: the fingerprints it had before, mostly 200/304, POSTs only to login and the API.
    const surge = events.filter((e) => mine(e) && inside(e)).map((e) => e.log);
    const known = new Set(events.filter((e) => mine(e) && e.log.timestamp < p!.startMs).map((e) => e.log.ja4));
    expect(surge.every((l) => known.has(l.ja4))).toBe(true);
    expect(surge.filter((l) => l.status === 200 || l.status === 304).length / surge.length).toBeGreaterThan(0.85);
    expect(surge.filter((l) => l.method === 'POST').every((l) => l.path === '/login' || l.path.startsWith('/api/'))).toBe(true);
    expect(new Set(surge.map((l) => l.client_ip)).size).toBeGreaterThan(500);
  });

  it('makes the new client a steady new entity that starts after the warm-up and lasts to the end', () => {
    const o = opts({ durationMs: 12 * MIN, scenarios: ['new_client'], seed: 12 });
    const [c] = scenarioLabels(o);
    expect(c!.kind).toBe('benign_drift');
    expect(c!.startMs).toBeGreaterThanOrEqual(START + WARM_UP_MS);
    expect(c!.endMs).toBe(START + 12 * MIN);
    expect(c!.match).toEqual({ asn: SCENARIOS.new_client.asn, ja4: SCENARIOS.new_client.ja4 });
    const events = take(o);
    expect(events.every((e) => e.label === null)).toBe(true);
    const mine = events.filter((e) => e.log.ja4 === c!.match.ja4).map((e) => e.log);
    // A fingerprint of its own: from its ASN only, and never before it starts.
    expect(mine.every((l) => l.asn === c!.match.asn && l.timestamp >= c!.startMs)).toBe(true);
    const rps = mine.length / ((c!.endMs - c!.startMs) / 1000);
    expect(rps / 300).toBeGreaterThan(0.025);
    expect(rps / 300).toBeLessThan(0.035);
    // Steady: each minute within a quarter of the mean.
    for (let m = c!.startMs; m + MIN <= c!.endMs; m += MIN) {
      const n = mine.filter((l) => l.timestamp >= m && l.timestamp < m + MIN).length;
      expect(Math.abs(n / 60 - rps) / rps).toBeLessThan(0.25);
    }
    expect(new Set(mine.map((l) => l.client_ip)).size).toBe(8);
    expect(mine.every((l) => l.status >= 200 && l.status < 300 && l.host === 'api.shop.example' && l.path.startsWith('/api/'))).toBe(true);
    const posts = mine.filter((l) => l.method === 'POST').length / mine.length;
    expect(posts).toBeGreaterThan(0.08);
    expect(posts).toBeLessThan(0.25);
    expect(mine.every((l) => l.method === 'GET' || l.method === 'POST')).toBe(true);
  });

  it('adds the new scenarios without changing what the others generate (other than request ids)', () => {
    const o = opts({ durationMs: 2 * MIN, scenarios: [...DEFAULT_SCENARIOS, 'flash_crowd'], seed: 5 });
    const strip = (e: LabelledEvent): string => JSON.stringify({ ...e.log, request_id: '' }) + e.label;
    const without = take(o).map(strip);
    const withNew = new Set(take({ ...o, scenarios: [...SCENARIO_NAMES] }).map(strip));
    expect(without.filter((x) => !withNew.has(x))).toEqual([]);
  });

  it('tells which entities contain a burst: the pair, its whole ASN, its whole fingerprint', () => {
    const m = { asn: 14061, ja4: 't13d3112h2_e8f1e7e78f70_6bebaf5329ec' };
    expect(burstContains('asn_ja4', '14061|t13d3112h2_e8f1e7e78f70_6bebaf5329ec', m)).toBe(true);
    expect(burstContains('asn', '14061', m)).toBe(true);
    expect(burstContains('ja4', m.ja4, m)).toBe(true);
    expect(burstContains('asn', '1406', m)).toBe(false);
    expect(burstContains('asn_ja4', '14061|null', m)).toBe(false);
    expect(burstContains('ja4', 't13d1516h2_8daaf6152771_02713d6af862', m)).toBe(false);
    // A surge of one network is contained in that network only; a surge of everyone in no entity.
    expect(burstContains('asn', '21928', { asn: 21928 })).toBe(true);
    expect(burstContains('asn_ja4', `21928|${m.ja4}`, { asn: 21928 })).toBe(false);
    expect(burstContains('asn', '21928', {})).toBe(false);
  });

  it('places attacks after two thirds of a short run', () => {
    const o = opts({ durationMs: 2 * MIN });
    const bursts = scenarioLabels(o);
    for (const b of bursts) {
      expect(b.startMs).toBeGreaterThanOrEqual(START + 80_000);
      expect(b.endMs).toBeLessThanOrEqual(START + 2 * MIN);
      expect(b.endMs).toBeGreaterThan(b.startMs);
    }
    const events = take(o);
    for (const b of bursts) expect(events.filter((e) => e.label === b.name).length).toBeGreaterThan(0);
  });

  it('spreads bursts over a long run, after the warm-up and before the last minute', () => {
    const o = opts({ durationMs: 30 * MIN, scenarios: [...SCENARIO_NAMES] });
    const bursts = scenarioLabels(o);
    for (const b of bursts) {
      expect(b.startMs).toBeGreaterThanOrEqual(START + WARM_UP_MS);
      if (b.kind === 'benign_drift') {
        // Drift does not end: it lasts to the end of the run.
        expect(b.endMs).toBe(START + 30 * MIN);
        continue;
      }
      expect(b.endMs).toBeLessThanOrEqual(START + 29 * MIN);
      expect(b.endMs - b.startMs).toBe(SCENARIOS[b.name].durationMs);
    }
    const starts = bursts.filter((b) => b.kind === 'attack').map((b) => b.startMs);
    expect(Math.max(...starts) - Math.min(...starts)).toBeGreaterThan(15 * MIN);
  });

  it('injects nothing for no scenarios and rejects unknown ones', () => {
    expect(take(opts({ durationMs: MIN, scenarios: [] })).every((e) => e.label === null)).toBe(true);
    expect(() => take(opts({ scenarios: ['ddos' as never] }))).toThrow(ConfigError);
    expect(() => take(opts({ durationMs: 0 }))).toThrow(ConfigError);
  });

  it('writes records that satisfy the request-log contract', () => {
    const events = take(opts({ durationMs: 2 * MIN, scenarios: [...SCENARIO_NAMES], seed: 7 }));
    const invalid = events.filter(({ log }) => {
      if (!requestLogType.isValid(log)) return true;
      try {
        validateRequestLog(log);
        return false;
      } catch {
        return true;
      }
    });
    expect(invalid).toEqual([]);
    expect(events.length).toBeGreaterThan(30_000);
  }, 20_000);

  it('looks like a CDN customer: many ASNs, IPv6, plain HTTP, a verified crawler, mostly 200/304', () => {
    const benign = full.filter((e) => e.label === null).map((e) => e.log);
    const asns = new Set(benign.map((l) => l.asn));
    expect(asns.size).toBeGreaterThan(150);
    expect([...asns].some((a) => a > 65_535)).toBe(true);
    const share = (f: (l: (typeof benign)[number]) => boolean): number => benign.filter(f).length / benign.length;
    expect(share((l) => l.ja4 === null)).toBeGreaterThan(0.03);
    expect(share((l) => l.ja4 === null)).toBeLessThan(0.07);
    expect(share((l) => isIP(l.client_ip) === 6)).toBeGreaterThan(0.1);
    expect(share((l) => l.status === 200 || l.status === 304)).toBeGreaterThan(0.85);
    expect(share((l) => l.protocol === 'HTTP/2')).toBeGreaterThan(0.5);
    expect(share((l) => l.challenge === 'NONE')).toBeGreaterThan(0.98);
    expect(benign.filter((l) => l.method === 'POST').every((l) => l.path === '/login' || l.path.startsWith('/api/'))).toBe(true);
    expect(benign.filter((l) => l.asn === 15169).every((l) => l.user_agent.includes('Googlebot'))).toBe(true);
    expect(new Set(benign.map((l) => l.host)).size).toBe(3);
    // Heavy tail: the busiest 1% of client IPs send a large share of requests.
    const perIp = new Map<string, number>();
    for (const l of benign) perIp.set(l.client_ip, (perIp.get(l.client_ip) ?? 0) + 1);
    const counts = [...perIp.values()].sort((a, b) => b - a);
    const top = counts.slice(0, Math.ceil(counts.length / 100)).reduce((a, b) => a + b, 0);
    expect(top / benign.length).toBeGreaterThan(0.05);
  }, 20_000);
});
