import { describe, expect, it } from 'vitest';
import type { LabelledBurst } from '../cli/traffic.js';
import type { RuleChange } from '../rules/lifecycle.js';
import type { EdgeRule, RequestLog } from '../schemas/index.js';
import {
  RuleHits,
  burstFlags,
  enforcedIntervals,
  firstWindowEnd,
  groupFlags,
  inBurst,
  latencyInSlides,
  ruleMatchesRequest,
  type FlagVerdict,
} from './eval-metrics.js';

const T0 = Date.UTC(2026, 10, 2, 12, 0, 0);
const S = 1000;
const PY = 't13d5911h2_a33745022dd6_1f22a2ca17c4';

function log(over: Partial<RequestLog> = {}): RequestLog {
  return {
    timestamp: T0,
    request_id: 'x',
    client_ip: '138.199.1.2',
    asn: 212238,
    country: 'GB',
    ja4: PY,
    user_agent: 'python-requests/2.31.0',
    method: 'POST',
    host: 'www.shop.example',
    path: '/login',
    status: 401,
    response_bytes: 410,
    protocol: 'HTTP/1.1',
    challenge: 'NONE',
    ...over,
  };
}

function rule(over: Partial<EdgeRule> = {}): EdgeRule {
  return {
    rule_id: `asn_ja4:212238|${PY}`,
    match: { asn: 212238, ja4: PY },
    action: 'challenge',
    mode: 'enforce',
    created_at: T0 + 60 * S,
    updated_at: T0 + 60 * S,
    expires_at: T0 + 660 * S,
    score: 0.99,
    reason: 'r',
    rate_limit_rps: null,
    verdict_id: null,
    entity_type: 'asn_ja4',
    entity: `212238|${PY}`,
    ...over,
  };
}

const upsert = (at: number, r: EdgeRule): RuleChange => ({ op: 'upsert', at, rule: r });
const del = (at: number, r: EdgeRule): RuleChange => ({ op: 'delete', at, rule: r, why: 'expired' });

describe('ruleMatchesRequest', () => {
  it('needs every key of the match to equal the field of the request', () => {
    expect(ruleMatchesRequest({ asn: 212238, ja4: PY }, log())).toBe(true);
    expect(ruleMatchesRequest({ asn: 212238 }, log({ ja4: null }))).toBe(true);
    expect(ruleMatchesRequest({ asn: 212238, ja4: PY }, log({ ja4: null }))).toBe(false);
    expect(ruleMatchesRequest({ asn: 212238, ja4: PY }, log({ asn: 14061 }))).toBe(false);
    expect(ruleMatchesRequest({ ja4: PY, country: 'GB', host: 'www.shop.example' }, log({ asn: 1 }))).toBe(true);
    expect(ruleMatchesRequest({ client_ip: '138.199.1.3' }, log())).toBe(false);
    expect(ruleMatchesRequest({ user_agent: 'python-requests/2.31.0' }, log())).toBe(true);
    // An empty match would hit everything: it hits nothing.
    expect(ruleMatchesRequest({}, log())).toBe(false);
  });
});

describe('enforcedIntervals and RuleHits', () => {
  it('holds a rule from its creation through renewals to its delete, and again after a re-creation', () => {
    const r1 = rule();
    const renewed = rule({ updated_at: T0 + 120 * S, expires_at: T0 + 720 * S });
    const again = rule({ created_at: T0 + 1000 * S, updated_at: T0 + 1000 * S, expires_at: T0 + 1600 * S });
    const iv = enforcedIntervals([upsert(T0 + 60 * S, r1), upsert(T0 + 120 * S, renewed), del(T0 + 720 * S, renewed), upsert(T0 + 1000 * S, again)]);
    expect(iv.map((i) => [i.from - T0, i.to - T0])).toEqual([
      [60 * S, 720 * S],
      [1000 * S, 1600 * S],
    ]);
    const hits = new RuleHits(iv);
    expect(hits.hits(log({ timestamp: T0 + 60 * S - 1 }))).toBe(false);
    expect(hits.hits(log({ timestamp: T0 + 60 * S }))).toBe(true);
    expect(hits.hits(log({ timestamp: T0 + 719 * S }))).toBe(true);
    expect(hits.hits(log({ timestamp: T0 + 720 * S }))).toBe(false);
    expect(hits.hits(log({ timestamp: T0 + 900 * S }))).toBe(false);
    expect(hits.hits(log({ timestamp: T0 + 1200 * S }))).toBe(true);
    expect(hits.hits(log({ timestamp: T0 + 1200 * S, ja4: 'other' }))).toBe(false);
  });

  it('ends a rule at its delete even when the delete comes before its expiry, and ignores shadow rules', () => {
    const r = rule();
    expect(enforcedIntervals([upsert(T0 + 60 * S, r), del(T0 + 100 * S, r)]).map((i) => i.to - T0)).toEqual([100 * S]);
    expect(enforcedIntervals([upsert(T0 + 60 * S, rule({ mode: 'shadow' }))])).toEqual([]);
    // With no delete (the run ended), the rule holds to its expiry.
    expect(enforcedIntervals([upsert(T0 + 60 * S, r)]).map((i) => i.to - T0)).toEqual([660 * S]);
  });

  it('finds rules by ASN, by fingerprint, or by any other match key', () => {
    const byJa4 = rule({ rule_id: `ja4:${PY}`, match: { ja4: PY } });
    const byIp = rule({ rule_id: 'ip', match: { client_ip: '1.2.3.4' } });
    const byAsn = rule({ rule_id: 'asn:14061', match: { asn: 14061 } });
    const hits = new RuleHits(enforcedIntervals([upsert(T0 + 60 * S, byJa4), upsert(T0 + 60 * S, byIp), upsert(T0 + 60 * S, byAsn)]));
    const t = T0 + 100 * S;
    expect(hits.hits(log({ timestamp: t, asn: 1 }))).toBe(true);
    expect(hits.hits(log({ timestamp: t, asn: 1, ja4: null, client_ip: '1.2.3.4' }))).toBe(true);
    expect(hits.hits(log({ timestamp: t, asn: 14061, ja4: null }))).toBe(true);
    expect(hits.hits(log({ timestamp: t, asn: 1, ja4: null }))).toBe(false);
  });
});

describe('latency in slides', () => {
  it('counts windows holding burst data, the first being the one ending at the first slide boundary after the start', () => {
    expect(firstWindowEnd(T0 + 3 * S, 10 * S)).toBe(T0 + 10 * S);
    // A burst starting on a boundary has no data in the window ending there.
    expect(firstWindowEnd(T0 + 10 * S, 10 * S)).toBe(T0 + 20 * S);
    expect(latencyInSlides(T0 + 3 * S, T0 + 10 * S, 10 * S)).toBe(1);
    expect(latencyInSlides(T0 + 3 * S, T0 + 20 * S, 10 * S)).toBe(2);
    expect(latencyInSlides(T0, T0 + 30 * S, 10 * S)).toBe(3);
    expect(latencyInSlides(T0 + 9_999, T0 + 10 * S, 10 * S)).toBe(1);
  });
});

describe('burst flags', () => {
  const attack: LabelledBurst = {
    name: 'credential_stuffing',
    kind: 'attack',
    startMs: T0 + 360 * S,
    endMs: T0 + 480 * S,
    match: { asn: 212238, ja4: PY },
    description: '',
  };
  const push: LabelledBurst = { name: 'push_notification', kind: 'benign_surge', startMs: T0 + 400 * S, endMs: T0 + 490 * S, match: { asn: 21928 }, description: '' };
  const crowd: LabelledBurst = { name: 'flash_crowd', kind: 'benign_surge', startMs: T0 + 400 * S, endMs: T0 + 520 * S, match: {}, description: '' };
  const v = (entity_type: string, entity: string, endS: number, score = 0.9): FlagVerdict => ({
    entity_type,
    entity,
    window_start: T0 + (endS - 60) * S,
    window_end: T0 + endS * S,
    score,
  });

  it('takes the first flag on an entity containing the attack, in a window holding its data', () => {
    const flags = [
      v('asn', '212238', 300), // before the attack: not its detection
      v('asn_ja4', `212238|${PY}`, 380),
      v('asn', '212238', 370),
      v('ja4', 't13d_other', 370),
      v('asn_ja4', `212238|${PY}`, 390),
    ];
    const f = burstFlags(attack, flags, [attack], 10 * S);
    expect(f.firstFlagEnd).toBe(T0 + 370 * S);
    expect(f.latencyMs).toBe(10 * S);
    expect(f.latencySlides).toBe(1);
    expect(f.entityTypes).toEqual(['asn', 'asn_ja4']);
    expect(f.windows).toEqual({ asn: 1, asn_ja4: 2 });
    expect(f.bystanders.map((e) => e.entity)).toEqual(['t13d_other']);
    expect(burstFlags(attack, [v('ja4', 't13d_other', 370)], [attack], 10 * S).firstFlagEnd).toBeNull();
  });

  it('lists benign entities flagged while a surge is in its windows, not the attack ones', () => {
    const flags = [v('asn', '21928', 420), v('asn', '21928', 430, 0.95), v('asn_ja4', `212238|${PY}`, 420), v('asn', '7922', 560), v('asn', '7922', 551)];
    const p = burstFlags(push, flags, [attack, push], 10 * S);
    expect(p.bystanders).toEqual([{ entity_type: 'asn', entity: '21928', firstEnd: T0 + 420 * S, windows: 2, maxScore: 0.95 }]);
    expect(p.windows).toEqual({ asn: 2 });
    // The window ending at 551 s starts at 491 s, after the push ended; the crowd's windows run to 580 s.
    expect(burstFlags(crowd, flags, [attack, crowd], 10 * S).bystanders.map((e) => `${e.entity}:${e.windows}`)).toEqual(['21928:2', '7922:2']);
    expect(groupFlags(flags).map((e) => e.entity_type + e.entity)).toEqual(['asn21928', `asn_ja4212238|${PY}`, 'asn7922']);
  });

  it('tells which requests belong to a burst', () => {
    expect(inBurst(attack, log(), 'credential_stuffing')).toBe(true);
    expect(inBurst(attack, log(), null)).toBe(false);
    expect(inBurst(crowd, log({ timestamp: T0 + 450 * S }), null)).toBeNull();
    expect(inBurst(push, log({ asn: 21928, timestamp: T0 + 450 * S }), null)).toBe(true);
    expect(inBurst(push, log({ asn: 21928, timestamp: T0 + 490 * S }), null)).toBe(false);
    expect(inBurst(push, log({ asn: 7922, timestamp: T0 + 450 * S }), null)).toBe(false);
  });
});
