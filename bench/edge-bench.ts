/**
 * The edge section (issue 5 bench):
 * - match throughput of the edge rule table (what `EdgeRuleSubscriber.match` runs) on 100 000
 *   rules of mixed shapes, against a same-process peer that scans the same rules linearly, on
 *   fewer requests; rounds alternate and the best of each is kept; both must decide alike;
 * - latency from a rule change handed to `EdgeRuleSink` (writeRuleChanges + flush) to a
 *   subscriber having applied it, one change at a time, on the real local Kafka;
 * - bootstrap time of a fresh subscriber on a topic of 100 000 rules.
 * Knobs: BENCH_EDGE_RULES (default 100 000), BENCH_EDGE_REQUESTS (indexed, default 1 000 000),
 * BENCH_EDGE_SCAN_REQUESTS (linear scan, default 2 000), BENCH_EDGE_CHANGES (latency, default 400),
 * BENCH_EDGE_ROUNDS (default 3).
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Kafka, logLevel } from 'kafkajs';
import { compareRules, RuleTable, ruleMatches, type MatchDecision, type MatchRequest } from '../edge/rule-table.js';
import { EdgeRuleSubscriber } from '../edge/subscriber.js';
import { localEndpoints } from '../infra/index.js';
import { Random } from '../random.js';
import type { RuleChange } from '../rules/lifecycle.js';
import type { EdgeRule, RuleAction, RuleMatch } from '../schemas/index.js';
import { EdgeRuleSink, edgeRulesConfigSchema } from '../sinks/edge-rules.js';

const seededRandom = (seed: number): (() => number) => {
  const r = new Random(seed, 0);
  return () => r.next();
};
const num = (name: string, dflt: number): number => (process.env[name] === undefined ? dflt : Number(process.env[name]));
const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');

function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? Number.NaN;
}

const ACTIONS: RuleAction[] = ['challenge', 'challenge', 'block', 'rate_limit', 'log'];

/** The shapes of the bench's rules and their shares (what the lifecycle emits, plus the other fields edge operators use). */
const SHAPES: [string, number, (i: number) => RuleMatch][] = [
  ['asn', 0.3, (i) => ({ asn: 100_000 + i })],
  ['asn+ja4', 0.3, (i) => ({ asn: 200_000 + (i % 5000), ja4: `t13d${i.toString(36)}_ja4` })],
  ['ja4', 0.15, (i) => ({ ja4: `t13d${i.toString(36)}_solo` })],
  ['client_ip', 0.1, (i) => ({ client_ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` })],
  ['country+host', 0.1, (i) => ({ country: `C${i % 200}`, host: `h${i}.example` })],
  ['user_agent', 0.05, (i) => ({ user_agent: `bot/${i}` })],
];

function makeRules(n: number, rand: () => number, now: number): EdgeRule[] {
  const rules: EdgeRule[] = [];
  for (let i = 0; i < n; i++) {
    let u = rand();
    let shape = SHAPES[SHAPES.length - 1] as (typeof SHAPES)[number];
    for (const s of SHAPES) {
      if (u < s[1]) {
        shape = s;
        break;
      }
      u -= s[1];
    }
    const action = ACTIONS[Math.floor(rand() * ACTIONS.length)] as RuleAction;
    rules.push({
      rule_id: `bench:${shape[0]}:${i}`,
      match: shape[2](i),
      action,
      mode: rand() < 0.1 ? 'shadow' : 'enforce',
      created_at: now - 60_000,
      updated_at: now - 10_000,
      expires_at: now + 3_600_000,
      score: 0.8 + rand() * 0.2,
      reason: 'bench',
      rate_limit_rps: action === 'rate_limit' ? 1 : null,
      verdict_id: null,
      entity_type: null,
      entity: null,
    });
  }
  return rules;
}

/** Requests with every match field: half take their values from a rule (hits), half are fresh (misses). */
function makeRequests(n: number, rules: readonly EdgeRule[], rand: () => number): MatchRequest[] {
  const out: MatchRequest[] = [];
  for (let i = 0; i < n; i++) {
    const req: MatchRequest = { asn: 64_000 + (i % 1000), ja4: `t13d_miss_${i % 777}`, country: 'DE', host: 'shop.example', client_ip: `192.0.2.${i & 255}`, user_agent: 'Mozilla/5.0' };
    if (rand() < 0.5) Object.assign(req, (rules[Math.floor(rand() * rules.length)] as EdgeRule).match);
    out.push(req);
  }
  return out;
}

/** The peer: every rule checked for every request, with the same expiry and precedence. */
function scanMatch(rules: readonly EdgeRule[], req: MatchRequest, now: number): MatchDecision {
  let best: EdgeRule | null = null;
  const shadow: EdgeRule[] = [];
  for (const r of rules) {
    if (r.expires_at <= now || !ruleMatches(r, req)) continue;
    if (r.mode === 'shadow') shadow.push(r);
    else if (!best || compareRules(r, best) < 0) best = r;
  }
  shadow.sort(compareRules);
  return { action: best?.action ?? null, rule: best, shadow };
}

function throughput(): string {
  const nRules = num('BENCH_EDGE_RULES', 100_000);
  const nReq = num('BENCH_EDGE_REQUESTS', 1_000_000);
  const nScan = num('BENCH_EDGE_SCAN_REQUESTS', 2_000);
  const rounds = num('BENCH_EDGE_ROUNDS', 3);
  const now = Date.UTC(2026, 10, 1);
  const rand = seededRandom(11);
  const rules = makeRules(nRules, rand, now);
  const table = new RuleTable({ maxRules: nRules, clock: () => now });
  const t0 = performance.now();
  for (const r of rules) table.upsert(r.rule_id, r);
  const loadMs = performance.now() - t0;
  const requests = makeRequests(Math.min(nReq, 200_000), rules, rand);

  // Both must decide alike before either is timed.
  let hits = 0;
  for (const req of requests.slice(0, nScan)) {
    const a = table.match(req);
    const b = scanMatch(rules, req, now);
    if (a.rule?.rule_id !== b.rule?.rule_id || a.shadow.map((r) => r.rule_id).join() !== b.shadow.map((r) => r.rule_id).join()) {
      throw new Error(`edge bench self-check: index and scan disagree on ${JSON.stringify(req)}`);
    }
    if (a.rule || a.shadow.length) hits++;
  }

  const indexRates: number[] = [];
  const scanRates: number[] = [];
  let sink = 0; // keeps the calls from being optimised away
  for (let round = 0; round < rounds; round++) {
    let s = performance.now();
    for (let i = 0; i < nReq; i++) if (table.match(requests[i % requests.length] as MatchRequest).rule) sink++;
    indexRates.push(nReq / ((performance.now() - s) / 1000));
    s = performance.now();
    for (let i = 0; i < nScan; i++) if (scanMatch(rules, requests[i] as MatchRequest, now).rule) sink++;
    scanRates.push(nScan / ((performance.now() - s) / 1000));
  }
  const bestIndex = Math.max(...indexRates);
  const bestScan = Math.max(...scanRates);
  const shapeCounts = SHAPES.map(([name]) => `${name} ${rules.filter((r) => r.rule_id.startsWith(`bench:${name}:`)).length.toLocaleString('en-US')}`).join(', ');
  return `### Match throughput on ${fmt(nRules)} rules

\`RuleTable.match\` (the whole of \`EdgeRuleSubscriber.match\`, which delegates to it) on ${fmt(nRules)} rules of ${SHAPES.length} shapes (${shapeCounts}; 10% shadow, actions mixed), against a linear scan of the same rules with the same expiry check and precedence, in the same process. Requests carry all six match fields; half take their values from a random rule, half from nowhere; on the first ${fmt(nScan)} requests both gave the same decision (${Math.round((hits / nScan) * 100)}% matched a rule). ${rounds} alternating rounds, best of each kept.

| | requests | best requests/s | all rounds (requests/s) |
|---|---:|---:|---|
| index (one Map probe per shape in force: ${table.shapesInForce}) | ${fmt(nReq)} | ${fmt(bestIndex)} | ${indexRates.map(fmt).join(', ')} |
| linear scan | ${fmt(nScan)} | ${fmt(bestScan)} | ${scanRates.map(fmt).join(', ')} |

**index / scan throughput ratio: ${fmt(bestIndex / bestScan)}×.** Loading the ${fmt(nRules)} decoded rules into the index took ${loadMs.toFixed(0)} ms. (${sink > 0 ? 'checksum ok' : 'no match'})
`;
}

async function latency(): Promise<string> {
  const changes = num('BENCH_EDGE_CHANGES', 400);
  const bootstrapRules = num('BENCH_EDGE_RULES', 100_000);
  const id = randomBytes(4).toString('hex');
  const topic = `bench-edge-${id}`;
  const kafka = new Kafka({ clientId: 'bench-edge', brokers: localEndpoints.kafkaBrokers, logLevel: logLevel.NOTHING, connectionTimeout: 5000, retry: { retries: 2 } });
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.listTopics();
  } catch (err) {
    throw new Error(`no Kafka at ${localEndpoints.kafkaBrokers.join(',')} (${(err as Error).message}): start it with \`node dist/cli/main.js infra up\``);
  }
  const sink = new EdgeRuleSink(kafka, edgeRulesConfigSchema.parse({ topic, partitions: 3 }));
  await sink.connect();
  const sub = new EdgeRuleSubscriber({ kafka, topic });
  const waiting = new Map<string, () => void>();
  sub.on('change', (c) => {
    if (c.rule_id) waiting.get(c.rule_id)?.();
  });
  const now = Date.now();
  const rand = seededRandom(12);
  const pool = makeRules(changes, rand, now);
  const applied: number[] = [];
  const acked: number[] = [];
  const warmup = 20;
  try {
    await sub.start();
    const live: EdgeRule[] = [];
    for (let i = 0; i < changes + warmup; i++) {
      // Two upserts (new rules and renewals) for one tombstone.
      let change: RuleChange;
      if (i % 3 === 2 && live.length > 0) change = { op: 'delete', at: now, rule: live.shift() as EdgeRule, why: 'expired' };
      else {
        const r = { ...(pool[i % pool.length] as EdgeRule), updated_at: now + i };
        live.push(r);
        change = { op: 'upsert', at: now, rule: r };
      }
      const seen = new Promise<void>((resolve) => waiting.set(change.rule.rule_id, resolve));
      const t0 = performance.now();
      await sink.writeRuleChanges([change]);
      await sink.flush();
      const tAck = performance.now();
      await seen;
      const tApplied = performance.now();
      waiting.delete(change.rule.rule_id);
      if (i >= warmup) {
        acked.push(tAck - t0);
        applied.push(tApplied - t0);
      }
    }
  } finally {
    await sub.stop();
  }

  // Bootstrap of a fresh subscriber on a topic holding `bootstrapRules` rules.
  const big = makeRules(bootstrapRules, seededRandom(13), now);
  for (let i = 0; i < big.length; i += 2000) {
    await sink.writeRuleChanges(big.slice(i, i + 2000).map((rule) => ({ op: 'upsert', at: now, rule })));
    await sink.flush();
  }
  const fresh = new EdgeRuleSubscriber({ kafka, topic, max_rules: bootstrapRules + changes });
  const b0 = performance.now();
  await fresh.start();
  const bootMs = performance.now() - b0;
  const held = fresh.size;
  const messages = fresh.counters.messages;
  await fresh.stop();
  await sink.close();
  await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
  await admin.disconnect();

  return `### Latency from EdgeRuleSink to a subscriber, on the local Kafka

${fmt(changes)} rule changes (two upserts for one tombstone), one at a time after ${warmup} not counted, on a new 3-partition compacted topic of the local single-broker Kafka (127.0.0.1, acks=all, idempotent producer). The clock starts before \`EdgeRuleSink.writeRuleChanges([change])\` and \`flush()\`; "acknowledged" stops when flush resolves (the broker has the change); "applied" stops when a running \`EdgeRuleSubscriber\` in the same process has decoded and applied it (its \`change\` event). Verdict-to-rule time in the pipeline adds the rules stage's transaction on top of this.

| | p50 ms | p99 ms | max ms |
|---|---:|---:|---:|
| acknowledged by the broker | ${quantile(acked, 0.5).toFixed(1)} | ${quantile(acked, 0.99).toFixed(1)} | ${Math.max(...acked).toFixed(1)} |
| applied at the subscriber | ${quantile(applied, 0.5).toFixed(1)} | ${quantile(applied, 0.99).toFixed(1)} | ${Math.max(...applied).toFixed(1)} |

### Bootstrap

A fresh subscriber read the same topic, then holding ${fmt(messages)} messages (${fmt(bootstrapRules)} rules published in batches of 2 000 plus the changes above; not compacted yet), up to its high watermarks in **${(bootMs / 1000).toFixed(2)} s** (${fmt(messages / (bootMs / 1000))} messages/s, consumer group join included) and held ${fmt(held)} rules.
`;
}

/** The markdown of the edge section (without its title). */
export async function runEdgeBench(): Promise<string> {
  const a = throughput();
  const b = await latency();
  return `${a}\n${b}`;
}
