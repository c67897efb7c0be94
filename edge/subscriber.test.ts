import avro from 'avsc';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import type { Logger } from '../logger.js';
import { encodePlain, encodeSingleObject } from '../schemas/codec.js';
import { edgeRuleToAvro, edgeRuleType, type EdgeRule, type RuleAction, type RuleMatch } from '../schemas/index.js';
import { compareRules, REJECT_REASONS, RuleTable, ruleMatches, type MatchDecision, type MatchRequest, type RejectReason } from './rule-table.js';
import { VerifiedCrawlers, verifiedCrawlerSchema } from './crawlers.js';
import { EdgeRuleSubscriber } from './subscriber.js';

/** fast-check runs are seeded so a failure replays the same way. */
const FC = { seed: 20251130, numRuns: 200 };
const NOW = Date.UTC(2026, 10, 1, 12, 0, 0);

function rule(id: string, match: RuleMatch, extra: Partial<EdgeRule> = {}): EdgeRule {
  return {
    rule_id: id,
    match,
    action: 'challenge',
    mode: 'enforce',
    created_at: NOW - 60_000,
    updated_at: NOW - 10_000,
    expires_at: NOW + 600_000,
    score: 0.9,
    reason: 'requests 909 in 60 s vs typical 8',
    rate_limit_rps: null,
    verdict_id: null,
    entity_type: null,
    entity: null,
    ...extra,
  };
}

const bytes = (r: EdgeRule): Buffer => encodeSingleObject(edgeRuleType, edgeRuleToAvro(r));

/** A logger that records its warnings (the table only warns). */
function recordingLogger(): { logger: Logger; warnings: { obj: Record<string, unknown>; msg: string }[] } {
  const warnings: { obj: Record<string, unknown>; msg: string }[] = [];
  const logger = { warn: (obj: Record<string, unknown>, msg: string) => warnings.push({ obj, msg }) } as unknown as Logger;
  return { logger, warnings };
}

function table(opts: { maxRules?: number } = {}) {
  const clock = { now: NOW };
  const log = recordingLogger();
  const t = new RuleTable({ maxRules: opts.maxRules ?? 100, clock: () => clock.now, logger: log.logger });
  return { t, clock, warnings: log.warnings };
}

describe('RuleTable: upserts and tombstones from the topic', () => {
  it('applies an upsert, replaces it with a new version (re-indexed), and deletes it on a tombstone', () => {
    const { t } = table();
    expect(t.applyMessage('asn:64512', bytes(rule('asn:64512', { asn: 64512 })))).toMatchObject({ kind: 'upsert', previous: null });
    expect(t.match({ asn: 64512, ja4: 'x' })).toMatchObject({ action: 'challenge', rule: { rule_id: 'asn:64512' } });
    expect(t.match({ asn: 64513 }).action).toBeNull();

    // A new version with another match and action: the old index entry must go.
    const v2 = rule('asn:64512', { asn: 64512, country: 'DE' }, { action: 'block' });
    expect(t.applyMessage('asn:64512', bytes(v2))).toMatchObject({ kind: 'upsert', previous: { action: 'challenge' } });
    expect(t.match({ asn: 64512 }).action).toBeNull();
    expect(t.match({ asn: 64512, country: 'DE' })).toMatchObject({ action: 'block' });
    expect(t.size).toBe(1);
    expect(t.shapesInForce).toBe(1);

    expect(t.applyMessage('asn:64512', null)).toMatchObject({ kind: 'delete', previous: { rule_id: 'asn:64512' } });
    expect(t.match({ asn: 64512, country: 'DE' }).action).toBeNull();
    expect(t.size).toBe(0);
    expect(t.shapesInForce).toBe(0);
    expect(t.counters).toMatchObject({ applied: 2, deleted: 1, tombstones_unknown: 0 });

    // A tombstone for a key never held is counted, not an error.
    expect(t.applyMessage('nope', null)).toEqual({ kind: 'delete', previous: null });
    expect(t.counters.tombstones_unknown).toBe(1);
  });

  it('decodes exactly what EdgeRuleSink encodes (all fields)', () => {
    const { t } = table();
    const r = rule('asn_ja4:64512|t13d', { asn: 64512, ja4: 't13d' }, { action: 'rate_limit', rate_limit_rps: 2.5, verdict_id: 'v1', entity_type: 'asn_ja4', entity: '64512|t13d' });
    t.applyMessage(r.rule_id, bytes(r));
    expect(t.rules()).toEqual([r]);
  });
});

describe('RuleTable: local expiry', () => {
  it('never matches a rule once expires_at <= now, before any tombstone, and purges it', () => {
    const { t, clock } = table();
    t.upsert('a', rule('a', { asn: 1 }, { expires_at: NOW + 1000 }));
    t.upsert('b', rule('b', { asn: 2 }, { expires_at: NOW + 5000 }));
    expect(t.match({ asn: 1 }).action).toBe('challenge');
    clock.now = NOW + 999;
    expect(t.match({ asn: 1 }).action).toBe('challenge');
    clock.now = NOW + 1000; // expires_at itself is past
    expect(t.match({ asn: 1 }).action).toBeNull();
    expect(t.rules().map((r) => r.rule_id)).toEqual(['b']);
    expect(t.purgeExpired().map((r) => r.rule_id)).toEqual(['a']);
    expect(t.size).toBe(1);
    expect(t.counters.expired).toBe(1);
    expect(t.purgeExpired()).toEqual([]); // nothing else due: no scan, nothing purged
    // The late tombstone finds nothing: counted as unknown, no error.
    expect(t.applyMessage('a', null)).toEqual({ kind: 'delete', previous: null });
    expect(t.counters.tombstones_unknown).toBe(1);
    expect(t.match({ asn: 2 }).action).toBe('challenge');
  });

  it('a late tombstone before the purge still deletes, and an expired rule is not matched meanwhile', () => {
    const { t, clock } = table();
    t.upsert('a', rule('a', { ja4: 'j' }, { expires_at: NOW + 1000 }));
    clock.now = NOW + 60_000;
    expect(t.match({ ja4: 'j' }).action).toBeNull();
    expect(t.applyMessage('a', null)).toMatchObject({ kind: 'delete', previous: { rule_id: 'a' } });
    expect(t.size).toBe(0);
  });

  it('an upsert already past its expiry is not held and removes the previous version of its key', () => {
    const { t } = table();
    t.upsert('a', rule('a', { asn: 1 }));
    expect(t.upsert('a', rule('a', { asn: 1 }, { expires_at: NOW - 1 }))).toMatchObject({ kind: 'expired', previous: { rule_id: 'a' } });
    expect(t.match({ asn: 1 }).action).toBeNull();
    expect(t.size).toBe(0);
    expect(t.counters).toMatchObject({ expired: 1, applied: 1 });
  });
});

describe('RuleTable: malformed rules are rejected, counted by reason, logged, never thrown', () => {
  const good = rule('r', { asn: 64512 });
  const otherSchema = avro.Type.forSchema({ type: 'record', name: 'Other', fields: [{ name: 'rule_id', type: 'string' }] });
  const cases: [string, string | null, Buffer | null | (() => EdgeRule), RejectReason][] = [
    ['no key', null, bytes(good), 'missing_key'],
    ['empty key', '', bytes(good), 'missing_key'],
    ['random bytes', 'r', Buffer.from('not avro at all'), 'undecodable'],
    ['empty value', 'r', Buffer.alloc(0), 'undecodable'],
    ['plain Avro without the single-object header', 'r', encodePlain(edgeRuleType, edgeRuleToAvro(good)), 'undecodable'],
    ['truncated', 'r', bytes(good).subarray(0, 20), 'undecodable'],
    ['trailing bytes', 'r', Buffer.concat([bytes(good), Buffer.from([1, 2, 3])]), 'undecodable'],
    ['another schema', 'r', encodeSingleObject(otherSchema, { rule_id: 'r' }), 'unknown_schema'],
    ['key differs from rule_id', 'other', bytes(good), 'key_mismatch'],
    ['match with no key', 'r', bytes(rule('r', {})), 'empty_match'],
    ['negative asn', 'r', bytes(rule('r', { asn: -1 })), 'bad_match'],
    ['asn over 32 bits', 'r', bytes(rule('r', { asn: 2 ** 33 })), 'bad_match'],
    ['empty ja4', 'r', bytes(rule('r', { ja4: '' })), 'bad_match'],
    ['NaN score', 'r', bytes(rule('r', { asn: 1 }, { score: Number.NaN })), 'bad_number'],
    ['score above 1', 'r', bytes(rule('r', { asn: 1 }, { score: 1.5 })), 'bad_number'],
    ['infinite rate', 'r', bytes(rule('r', { asn: 1 }, { action: 'rate_limit', rate_limit_rps: Number.POSITIVE_INFINITY })), 'bad_number'],
    ['zero rate', 'r', bytes(rule('r', { asn: 1 }, { action: 'rate_limit', rate_limit_rps: 0 })), 'bad_number'],
    ['bad action (from code)', 'r', () => rule('r', { asn: 1 }, { action: 'ban' as RuleAction }), 'bad_action'],
    ['bad mode (from code)', 'r', () => rule('r', { asn: 1 }, { mode: 'dry-run' as EdgeRule['mode'] }), 'bad_mode'],
    ['non-integer expiry (from code)', 'r', () => rule('r', { asn: 1 }, { expires_at: NOW + 0.5 }), 'bad_number'],
    ['unknown match key (from code)', 'r', () => rule('r', { path: '/login' } as RuleMatch), 'bad_match'],
  ];

  it.each(cases)('%s → %s', (_name, key, value, reason) => {
    const { t, warnings } = table();
    // A valid version held under the key first: the malformed one supersedes it on the
    // compacted topic, so it must not linger here either.
    if (key) t.upsert(key, rule(key, { asn: 64512 }));
    const outcome = typeof value === 'function' ? t.upsert(key as string, value()) : t.applyMessage(key, value);
    expect(outcome).toMatchObject({ kind: 'rejected', reason });
    expect(t.counters.rejected[reason]).toBe(1);
    for (const other of REJECT_REASONS) if (other !== reason) expect(t.counters.rejected[other]).toBe(0);
    expect(t.size).toBe(0);
    expect(t.match({ asn: 64512 }).action).toBeNull();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.obj.reason).toBe(reason);
  });

  it('logs the first 20 of a reason, then every 1 000th, but counts all', () => {
    const { t, warnings } = table();
    for (let i = 0; i < 2500; i++) t.applyMessage(`k${i}`, Buffer.from('junk'));
    expect(t.counters.rejected.undecodable).toBe(2500);
    expect(warnings).toHaveLength(22);
  });
});

describe('RuleTable: cap on the rule count', () => {
  it('refuses new rule ids at max_rules, still updates and deletes held ones, and makes room from expired ones', () => {
    const { t, clock, warnings } = table({ maxRules: 3 });
    t.upsert('a', rule('a', { asn: 1 }, { expires_at: NOW + 1000 }));
    t.upsert('b', rule('b', { asn: 2 }));
    t.upsert('c', rule('c', { asn: 3 }));
    expect(t.upsert('d', rule('d', { asn: 4 }))).toMatchObject({ kind: 'refused' });
    expect(t.match({ asn: 4 }).action).toBeNull();
    expect(t.counters.refused_at_cap).toBe(1);
    expect(warnings).toHaveLength(1);
    // An update of a held rule is not a new id.
    expect(t.upsert('b', rule('b', { asn: 2 }, { action: 'block' }))).toMatchObject({ kind: 'upsert' });
    expect(t.match({ asn: 2 }).action).toBe('block');
    // Once 'a' has expired, it is purged to make room.
    clock.now = NOW + 1000;
    expect(t.upsert('d', rule('d', { asn: 4 }))).toMatchObject({ kind: 'upsert' });
    expect(t.counters.expired).toBe(1);
    // A tombstone frees a slot too.
    expect(t.upsert('e', rule('e', { asn: 5 }))).toMatchObject({ kind: 'refused' });
    t.applyMessage('c', null);
    expect(t.upsert('e', rule('e', { asn: 5 }))).toMatchObject({ kind: 'upsert' });
    expect(t.rules().map((r) => r.rule_id)).toEqual(['b', 'd', 'e']);
  });
});

describe('RuleTable: match', () => {
  it('the most severe enforce action wins: block > rate_limit > challenge > log', () => {
    const { t } = table();
    const order: RuleAction[] = ['log', 'challenge', 'rate_limit', 'block'];
    const shapes: RuleMatch[] = [{ asn: 1 }, { ja4: 'j' }, { asn: 1, ja4: 'j' }, { country: 'DE' }];
    for (let i = 0; i < order.length; i++) {
      const action = order[i] as RuleAction;
      t.upsert(action, rule(action, shapes[i] as RuleMatch, { action }));
      expect(t.match({ asn: 1, ja4: 'j', country: 'DE' }).action).toBe(action);
    }
    t.applyMessage('block', null);
    expect(t.match({ asn: 1, ja4: 'j', country: 'DE' })).toMatchObject({ action: 'rate_limit', rule: { rule_id: 'rate_limit' } });
    expect(t.match({ asn: 1 })).toMatchObject({ action: 'log' });
  });

  it('shadow rules never enforce but are reported, ordered by precedence', () => {
    const { t } = table();
    t.upsert('s-block', rule('s-block', { asn: 1 }, { action: 'block', mode: 'shadow' }));
    t.upsert('s-log', rule('s-log', { asn: 1, host: 'h' }, { action: 'log', mode: 'shadow' }));
    let d: MatchDecision = t.match({ asn: 1, host: 'h' });
    expect(d.action).toBeNull();
    expect(d.rule).toBeNull();
    expect(d.shadow.map((r) => r.rule_id)).toEqual(['s-block', 's-log']);
    t.upsert('e', rule('e', { host: 'h' }, { action: 'challenge' }));
    d = t.match({ asn: 1, host: 'h' });
    expect(d).toMatchObject({ action: 'challenge', rule: { rule_id: 'e' } });
    expect(d.shadow).toHaveLength(2);
    expect(t.match({ asn: 2 })).toEqual({ action: null, rule: null, shadow: [] });
  });

  it('at equal severity the more specific rule wins, then the higher score, then the smaller id', () => {
    const { t } = table();
    t.upsert('whole-asn', rule('whole-asn', { asn: 1 }, { score: 0.99 }));
    t.upsert('pair', rule('pair', { asn: 1, ja4: 'j' }, { score: 0.81 }));
    expect(t.match({ asn: 1, ja4: 'j' }).rule?.rule_id).toBe('pair');
    t.upsert('pair-2', rule('pair-2', { asn: 1, ja4: 'j' }, { score: 0.95 }));
    expect(t.match({ asn: 1, ja4: 'j' }).rule?.rule_id).toBe('pair-2');
    t.upsert('pair-1', rule('pair-1', { asn: 1, ja4: 'j' }, { score: 0.95 }));
    expect(t.match({ asn: 1, ja4: 'j' }).rule?.rule_id).toBe('pair-1');
  });

  it('a rule applies only when the request has every field it constrains, with equal values', () => {
    const { t } = table();
    t.upsert('pair', rule('pair', { asn: 64512, ja4: 't13d' }));
    t.upsert('ip', rule('ip', { client_ip: '203.0.113.7' }));
    t.upsert('ua', rule('ua', { user_agent: 'curl/8', host: 'shop.example' }));
    expect(t.match({ asn: 64512 }).action).toBeNull();
    expect(t.match({ asn: 64512, ja4: null }).action).toBeNull(); // plain HTTP
    expect(t.match({ asn: 64512, ja4: 't13d' }).rule?.rule_id).toBe('pair');
    expect(t.match({ client_ip: '203.0.113.7' }).rule?.rule_id).toBe('ip');
    expect(t.match({ client_ip: '203.0.113.70' }).action).toBeNull();
    expect(t.match({ user_agent: 'curl/8', host: 'shop.example', country: 'FR' }).rule?.rule_id).toBe('ua');
    expect(t.match({}).action).toBeNull();
    expect(t.shapesInForce).toBe(3);
  });

  it('values cannot collide across the fields of one shape', () => {
    const { t } = table();
    t.upsert('x', rule('x', { country: 'D', host: 'Eh' }));
    expect(t.match({ country: 'DE', host: 'h' }).action).toBeNull();
    expect(t.match({ country: 'D', host: 'Eh' }).action).toBe('challenge');
  });

  it('the index gives what a brute-force scan gives, on random rule sets, tombstones and clocks (fast-check)', () => {
    const asn = fc.constantFrom(1, 2, 3);
    const str = (p: string) => fc.constantFrom(`${p}1`, `${p}2`);
    const matchArb = fc
      .record(
        { asn, ja4: str('j'), country: str('c'), host: str('h'), client_ip: str('ip'), user_agent: str('ua') },
        { requiredKeys: [] },
      )
      .filter((m) => Object.keys(m).length > 0);
    const ruleArb = fc.record({
      id: fc.integer({ min: 0, max: 30 }),
      match: matchArb,
      action: fc.constantFrom<RuleAction>('block', 'rate_limit', 'challenge', 'log'),
      mode: fc.constantFrom<EdgeRule['mode']>('enforce', 'shadow'),
      score: fc.constantFrom(0.8, 0.9, 1),
      ttl: fc.integer({ min: -10, max: 100 }),
      tombstone: fc.boolean(),
    });
    const requestArb = fc.record(
      { asn, ja4: fc.option(str('j')), country: str('c'), host: str('h'), client_ip: str('ip'), user_agent: str('ua') },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.array(ruleArb, { maxLength: 60 }), fc.array(requestArb, { minLength: 1, maxLength: 30 }), fc.integer({ min: 0, max: 60 }), (ops, requests, later) => {
        const clock = { now: NOW };
        const t = new RuleTable({ maxRules: 1000, clock: () => clock.now });
        const model = new Map<string, EdgeRule>();
        for (const op of ops) {
          const id = `r${op.id}`;
          if (op.tombstone) {
            t.applyMessage(id, null);
            model.delete(id);
          } else {
            const r = rule(id, op.match, { action: op.action, mode: op.mode, score: op.score, expires_at: NOW + op.ttl });
            t.applyMessage(id, bytes(r));
            if (r.expires_at > clock.now) model.set(id, r);
            else model.delete(id);
          }
        }
        clock.now = NOW + later;
        for (const req of requests as MatchRequest[]) {
          const hits = [...model.values()].filter((r) => r.expires_at > clock.now && ruleMatches(r, req)).sort(compareRules);
          const enforce = hits.filter((r) => r.mode === 'enforce');
          const got = t.match(req);
          expect(got.rule?.rule_id ?? null).toBe(enforce[0]?.rule_id ?? null);
          expect(got.action).toBe(enforce[0]?.action ?? null);
          expect(got.shadow.map((r) => r.rule_id)).toEqual(hits.filter((r) => r.mode === 'shadow').map((r) => r.rule_id));
        }
        expect(t.rules().map((r) => r.rule_id)).toEqual([...model.values()].filter((r) => r.expires_at > clock.now).map((r) => r.rule_id).sort());
      }),
      FC,
    );
  });
});

describe('EdgeRuleSubscriber options', () => {
  const configKey = (options: unknown): string => {
    try {
      new EdgeRuleSubscriber(options as never);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as ConfigError).key;
    }
    throw new Error('no error');
  };

  it('names the bad key', () => {
    expect(configKey({})).toBe('brokers');
    expect(configKey({ brokers: ['no-port'] })).toBe('brokers.0');
    expect(configKey({ brokers: ['127.0.0.1:19092'], max_rules: 0 })).toBe('max_rules');
    expect(configKey({ brokers: ['127.0.0.1:19092'], topic: '' })).toBe('topic');
    expect(configKey({ brokers: ['127.0.0.1:19092'], clock: 5 })).toBe('clock');
    expect(configKey({ brokers: ['127.0.0.1:19092'], maxRules: 5 })).toBe('maxRules');
    expect(configKey({ brokers: ['127.0.0.1:19092'], kafka: { consumer: () => null, admin: () => null } })).toBe('kafka');
  });

  it('accepts brokers with defaults, and holds no rules before start', () => {
    const s = new EdgeRuleSubscriber({ brokers: ['127.0.0.1:19092'] });
    expect(s.topic).toBe('edge-rules');
    expect(s.ready).toBe(false);
    expect(s.size).toBe(0);
    expect(s.match({ asn: 1 })).toEqual({ action: null, rule: null, shadow: [] });
    expect(s.counters).toMatchObject({ messages: 0, applied: 0, refused_at_cap: 0 });
  });
});

describe('verified crawlers', () => {
  const googlebot = { name: 'googlebot', user_agent: 'Googlebot', cidrs: ['66.249.64.0/19', '2001:4860:4801:10::/64'] };

  it('exempts a request only when its user agent claims the crawler and its address is in its ranges', () => {
    const c = new VerifiedCrawlers([verifiedCrawlerSchema.parse(googlebot)]);
    const ua = 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)';
    expect(c.verify({ client_ip: '66.249.66.1', user_agent: ua })).toBe('googlebot');
    expect(c.verify({ client_ip: '2001:4860:4801:10::7', user_agent: ua.toLowerCase() })).toBe('googlebot');
    expect(c.verify({ client_ip: '66.249.96.1', user_agent: ua })).toBeNull(); // outside the /19
    expect(c.verify({ client_ip: '66.249.66.1', user_agent: 'python-requests/2.31' })).toBeNull(); // its ranges, not its claim
    expect(c.verify({ client_ip: 'not-an-ip', user_agent: ua })).toBeNull();
    expect(c.verify({ user_agent: ua })).toBeNull();
  });

  it('lets a verified crawler through every rule in match, and counts it', () => {
    const s = new EdgeRuleSubscriber({ brokers: ['127.0.0.1:19092'], verified_crawlers: [googlebot] });
    expect(s.match({ asn: 15169, client_ip: '66.249.66.1', user_agent: 'Googlebot/2.1' })).toEqual({ action: null, rule: null, shadow: [], crawler: 'googlebot' });
    expect(s.exemptByCrawler).toBe(1);
    expect(s.match({ asn: 15169, client_ip: '203.0.113.9', user_agent: 'Googlebot/2.1' })).toEqual({ action: null, rule: null, shadow: [] });
  });

  it('names the bad key of a crawler', () => {
    const key = (crawler: unknown): string => {
      try {
        new EdgeRuleSubscriber({ brokers: ['127.0.0.1:19092'], verified_crawlers: [crawler as never] });
      } catch (err) {
        return (err as ConfigError).key;
      }
      return 'no error';
    };
    expect(key({ ...googlebot, cidrs: ['66.249.64.0/33'] })).toBe('verified_crawlers.0.cidrs.0');
    expect(key({ ...googlebot, user_agent: '(' })).toBe('verified_crawlers.0.user_agent');
    expect(key({ ...googlebot, ua: 'x' })).toBe('verified_crawlers.0.ua');
  });
});
