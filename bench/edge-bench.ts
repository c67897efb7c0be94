/**
 * The edge section (issue 5 bench):
 * - match throughput of the edge rule table (what `EdgeRuleSubscriber.match` runs) on 100 000
 *   rules of mixed shapes, against a same-process peer that scans the same rules linearly, on
 *   fewer requests; rounds alternate and the best of each is kept; both must decide alike;
 * - latency from a rule change handed to `EdgeRuleSink` (writeRuleChanges + flush) to a
 *   subscriber having applied it, one change at a time, on the real local Kafka;
 * - bootstrap time of a fresh subscriber on a topic of 100 000 rules;
 * - end to end on the live service (`startService`, real Kafka and ClickHouse): latency from stage 2
 *   handing an anomalous verdict on to a subscriber having applied the rule upsert that names it.
 * Knobs: BENCH_EDGE_RULES (default 100 000), BENCH_EDGE_REQUESTS (indexed, default 1 000 000),
 * BENCH_EDGE_SCAN_REQUESTS (linear scan, default 2 000), BENCH_EDGE_CHANGES (latency, default 400),
 * BENCH_EDGE_ROUNDS (default 3), BENCH_EDGE_E2E_BURSTERS (entities that burst, default 8),
 * BENCH_EDGE_E2E_BURSTS (bursts of each, default 4), BENCH_EDGE_E2E_SLIDE_MS (wall ms per 10 s of
 * event time produced, default 500).
 */
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { createClient } from '@clickhouse/client';
import { Kafka, logLevel } from 'kafkajs';
import { startService } from '../cli/service.js';
import { parseConfig } from '../config.js';
import { internalTopics } from '../consumers/topology.js';
import { compareRules, RuleTable, ruleMatches, type MatchDecision, type MatchRequest } from '../edge/rule-table.js';
import { EdgeRuleSubscriber } from '../edge/subscriber.js';
import { localEndpoints } from '../infra/index.js';
import { Random } from '../random.js';
import type { RuleChange } from '../rules/lifecycle.js';
import { encodeSingleObject } from '../schemas/codec.js';
import { requestLogType, type EdgeRule, type RequestLog, type RuleAction, type RuleMatch } from '../schemas/index.js';
import { EdgeRuleSink, edgeRulesConfigSchema } from '../sinks/edge-rules.js';
import { quantile } from 'simple-statistics';

const seededRandom = (seed: number): (() => number) => {
  const r = new Random(seed, 0);
  return () => r.next();
};
const num = (name: string, dflt: number): number => (process.env[name] === undefined ? dflt : Number(process.env[name]));
const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');

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

${fmt(changes)} rule changes (two upserts for one tombstone), one at a time after ${warmup} not counted, on a new 3-partition compacted topic of the local single-broker Kafka (127.0.0.1, acks=all, idempotent producer). The clock starts before \`EdgeRuleSink.writeRuleChanges([change])\` and \`flush()\`; "acknowledged" stops when flush resolves (the broker has the change); "applied" stops when a running \`EdgeRuleSubscriber\` in the same process has decoded and applied it (its \`change\` event). The live service publishes rule changes the same way (in the rules stage's \`beforeCommit\`, before its own transaction commits); the end-to-end figure below adds what comes before that.

| | p50 ms | p99 ms | max ms |
|---|---:|---:|---:|
| acknowledged by the broker | ${quantile(acked, 0.5).toFixed(1)} | ${quantile(acked, 0.99).toFixed(1)} | ${Math.max(...acked).toFixed(1)} |
| applied at the subscriber | ${quantile(applied, 0.5).toFixed(1)} | ${quantile(applied, 0.99).toFixed(1)} | ${Math.max(...applied).toFixed(1)} |

### Bootstrap

A fresh subscriber read the same topic, then holding ${fmt(messages)} messages (${fmt(bootstrapRules)} rules published in batches of 2 000 plus the changes above; not compacted yet), up to its high watermarks in **${(bootMs / 1000).toFixed(2)} s** (${fmt(messages / (bootMs / 1000))} messages/s, consumer group join included) and held ${fmt(held)} rules.
`;
}

const JA4_BROWSER = 't13d1516h2_8daaf6152771_02713d6af862';
const JA4_APP = 't13d1715h2_5b57614c22b0_3d5424432f57';
const JA4_BOT = 't13d190900_9dc949149365_97f8aa674fd9';
const SLIDE_MS = 10_000;

/**
 * Traffic for the end-to-end run, one array per 10 s slide of event time from `t0`: a steady
 * baseline of three networks, and `bursters` ASN×JA4 pairs (ASNs 65001…, the same bot
 * fingerprint) that send a request every 5 s and, from minute 3, burst at 10 requests/s for 2
 * minutes every 5 minutes, staggered by 30 s, `bursts` times each.
 */
function e2eTraffic(t0: number, bursters: number, bursts: number): RequestLog[][] {
  const warmupMs = 180_000;
  const periodMs = 300_000;
  const burstMs = 120_000;
  const slides = Math.ceil((warmupMs + (bursts - 1) * periodMs + (bursters - 1) * 30_000 + burstMs + 120_000) / SLIDE_MS);
  const out: RequestLog[][] = [];
  let n = 0;
  const log = (ts: number, asn: number, ja4: string | null, ip: string, extra: Partial<RequestLog> = {}): RequestLog => ({
    timestamp: ts, request_id: `e2e-${n++}`, client_ip: ip, asn, country: 'DE', ja4, user_agent: 'Mozilla/5.0', method: 'GET',
    host: 'shop.example', path: `/p/${n % 40}`, status: 200, response_bytes: 1000 + (n % 300), protocol: 'HTTP/2', challenge: 'NONE', ...extra,
  });
  for (let slide = 0; slide < slides; slide++) {
    const logs: RequestLog[] = [];
    for (let s = slide * 10; s < slide * 10 + 10; s++) {
      const t = t0 + s * 1000;
      logs.push(log(t + 100, 64512, JA4_BROWSER, `10.0.0.${(s % 20) + 1}`), log(t + 600, 64512, JA4_BROWSER, `10.0.0.${((s * 7) % 20) + 1}`));
      logs.push(log(t + 200, 3320, JA4_BROWSER, `2001:db8::${(s % 50) + 1}`, { protocol: 'HTTP/3' }));
      if (s % 2 === 0) logs.push(log(t + 400, 3320, null, `192.0.2.${(s % 9) + 1}`, { protocol: 'HTTP/1.1' }));
      logs.push(log(t + 500, 4_200_000_001, JA4_APP, `198.51.100.${(s % 30) + 1}`));
      for (let b = 0; b < bursters; b++) {
        const asn = 65_001 + b;
        if (s % 5 === b % 5) logs.push(log(t + 300 + b, asn, JA4_BOT, `10.${b + 10}.0.${(s % 3) + 1}`));
        const since = s * 1000 - warmupMs - b * 30_000;
        const burst = Math.floor(since / periodMs);
        if (since >= 0 && burst < bursts && since % periodMs < burstMs) {
          for (let k = 0; k < 10; k++) {
            logs.push(log(t + k * 100 + 7 + b, asn, JA4_BOT, `203.0.${b}.${(k * 7 + s) % 200}`, { method: 'POST', path: '/login', status: 401 }));
          }
        }
      }
    }
    out.push(logs.sort((a, b) => a.timestamp - b.timestamp));
  }
  return out;
}

/**
 * Verdict to rule at a subscriber on the live service: `startService` on fresh topics and a fresh
 * database, a subscriber on its rule topic started before the traffic, then traffic produced at a
 * steady pace (one slide of event time every BENCH_EDGE_E2E_SLIDE_MS); for each rule upsert the
 * subscriber applies, the time since stage 2 handed on (its onWindow hook) the verdict it names.
 */
async function endToEnd(): Promise<string> {
  const bursters = num('BENCH_EDGE_E2E_BURSTERS', 8);
  const bursts = num('BENCH_EDGE_E2E_BURSTS', 4);
  const paceMs = num('BENCH_EDGE_E2E_SLIDE_MS', 500);
  const id = randomBytes(4).toString('hex');
  const topic = `bench-e2e-logs-${id}`;
  const rulesTopic = `bench-e2e-rules-${id}`;
  const dlq = `bench-e2e-dlq-${id}`;
  const group = `bench-e2e-${id}`;
  const database = `bw_bench_e2e_${id}`;
  const kafka = new Kafka({ clientId: 'bench-e2e', brokers: localEndpoints.kafkaBrokers, logLevel: logLevel.NOTHING, connectionTimeout: 5000 });
  // Event time ends where the run starts: the service dead-letters records more than
  // input.max_future_ms ahead of its clock, and event time runs faster than the wall here.
  const first = e2eTraffic(0, bursters, bursts);
  const t0 = Math.floor((Date.now() - first.length * SLIDE_MS) / 60_000) * 60_000;
  const slides = e2eTraffic(t0, bursters, bursts);
  const total = slides.reduce((s, x) => s + x.length, 0);
  const config = parseConfig({
    kafka: { brokers: localEndpoints.kafkaBrokers },
    input: { topic, group_id: group },
    dead_letter: { topic: dlq },
    edge_rules: { topic: rulesTopic },
    clickhouse: { url: localEndpoints.clickhouseUrl, database },
    windows: { idle_partition_ms: 2_000, idle_flush_ms: 2_000 },
    scorer: { robust_deviation: { history: 30, warmup: 12, noise_floor: 'poisson' } },
    metrics: { port: 0 },
    // Every anomalous window makes or renews a rule; a long TTL so that no rule has expired by
    // the wall clock when it reaches the subscriber (event time here lies in the last half hour);
    // a world of a dozen entities, so the blast radius is loosened.
    rules: { create_after_windows: 1, remove_after_calm_windows: 6, ttl_ms: 3_600_000, blast_radius: { max_share: 0.5 } },
  });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 3, replicationFactor: 1 }] });
  const handedOn = new Map<string, number>();
  const applied = new Map<string, number>();
  let unnamed = 0;
  let expired = 0;
  let changes = 0;
  const service = await startService(config, {
    onWindow: (_r, _w, verdicts) => {
      const t = performance.now();
      for (const v of verdicts) if (v.anomalous && !handedOn.has(v.verdict_id)) handedOn.set(v.verdict_id, t);
    },
  });
  const sub = new EdgeRuleSubscriber({ kafka, topic: rulesTopic });
  sub.on('change', (c) => {
    const t = performance.now();
    changes++;
    if (c.outcome.kind === 'expired') expired++;
    if (c.outcome.kind !== 'upsert') return;
    const vid = c.outcome.rule.verdict_id;
    if (!vid) unnamed++;
    else if (!applied.has(vid)) applied.set(vid, t);
  });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  const w0 = performance.now();
  let setupMs = 0;
  let wallMs = 0;
  let settled = false;
  try {
    await sub.start();
    const until = Date.now() + 60_000;
    while (!(service.panes.ready && service.windows.ready && service.rules.ready) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    await producer.connect();
    const p0 = performance.now();
    setupMs = p0 - w0;
    for (let i = 0; i < slides.length; i++) {
      const messages = (slides[i] as RequestLog[]).map((l) => ({ key: l.client_ip, value: encodeSingleObject(requestLogType, l) }));
      await producer.send({ topic, acks: -1, messages });
      const wait = p0 + (i + 1) * paceMs - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline && !(settled = await service.settled(total))) await new Promise((r) => setTimeout(r, 250));
    while (Date.now() < deadline && sub.counters.messages < service.edgeRules.published) await new Promise((r) => setTimeout(r, 100));
    wallMs = performance.now() - p0;
    const fatal = service.fatal();
    if (fatal) throw new Error(`edge e2e: the service stopped: ${(fatal as Error).message}`);
  } finally {
    await producer.disconnect().catch(() => undefined);
    await sub.stop();
    await service.stop();
    const t = internalTopics(config.topology, group);
    await admin.deleteTopics({ topics: [topic, rulesTopic, dlq, t.repartition, t.changelog, t.verdicts, t.rulesChangelog] }).catch(() => undefined);
    await admin.disconnect();
    const ch = createClient({ url: localEndpoints.clickhouseUrl, request_timeout: 120_000, clickhouse_settings: {} });
    const d0 = performance.now();
    await ch.command({ query: `DROP DATABASE IF EXISTS ${database}` }).catch((err: unknown) => {
      process.stderr.write(`bench: edge e2e: could not drop ${database}: ${(err as Error).message}\n`);
    });
    process.stderr.write(`bench: edge e2e: DROP DATABASE ${database} took ${(performance.now() - d0).toFixed(0)} ms\n`);
    await ch.close();
  }
  const lat: number[] = [];
  let missing = 0;
  for (const [vid, t] of applied) {
    const h = handedOn.get(vid);
    if (h === undefined) missing++;
    else lat.push(t - h);
  }
  if (lat.length === 0) throw new Error(`edge e2e: no rule upsert could be matched to its verdict (${changes} changes at the subscriber, ${handedOn.size} anomalous verdicts handed on)`);
  const s = service.stats;
  const eventMin = (slides.length * SLIDE_MS) / 60_000;
  return `### Latency from a verdict to its rule at a subscriber, on the live service

\`startService\` (the three stages of docs/scaling.md §4 in this process: 3 input partitions, ${service.windows.partitions.length || config.topology.repartition_partitions} stage-2 partitions, one rules task) on new topics and a new ClickHouse database, with \`rules.create_after_windows\` 1 (each anomalous window makes or renews its entity's rule), \`remove_after_calm_windows\` 6, \`blast_radius.max_share\` 0.5 and the scorer settings of test/integration/rules.test.ts. An \`EdgeRuleSubscriber\` on its rule topic was started before the traffic. Traffic: ${fmt(total)} request logs over ${eventMin.toFixed(0)} minutes of event time (a steady baseline of three networks, and ${bursters} ASN×JA4 pairs that each burst at 10 requests/s for 2 minutes, ${bursts} times, 5 minutes apart, staggered), produced one 10 s slide every ${paceMs} ms (${(SLIDE_MS / paceMs).toFixed(0)}× real time, so the service keeps up rather than works through a backlog) to the local Kafka; ${fmt(wallMs / 1000)} s from the first slide to the last upsert applied. Stage 2 closed ${fmt(s.windows.windowsClosed)} windows (summed over its partitions), scored ${fmt(s.windows.verdicts)} verdicts (${fmt(s.windows.anomalous)} anomalous) and made ${fmt(s.rules.upserts)} upserts and ${fmt(s.rules.deletes)} deletes${settled ? '' : ' (not settled within 120 s after the last slide)'}.

The clock starts when stage 2's \`onWindow\` hook (passed through \`startService\`'s \`hooks\`) sees the verdict: the window has been scored, its aggregates and verdicts buffered for ClickHouse and its message to the rules stage queued in the partition's outbox. It stops when the subscriber's \`change\` event shows the upsert applied whose rule's \`verdict_id\` is that verdict's. **In the interval:** the rest of stage 2's batch, its \`beforeCommit\` (the ClickHouse insert of the batch's rows) and its Kafka transaction commit (the rules stage reads read_committed); the rules stage's fetch, and its wait until every stage-2 partition has closed the window (the slowest of the ${service.windows.partitions.length || config.topology.repartition_partitions} partitions' progress decides); the rule lifecycle; its \`beforeCommit\`, whose first step publishes the rule changes to the edge-rule topic (idempotent producer, acks=all; the subscriber can see them from then on, so the rules stage's own ClickHouse insert and transaction commit that follow are not in it); the broker; the subscriber's fetch (maxWait 1 s, returned as soon as data arrives), decode and apply. **Not in it:** everything before the verdict: producing, stage 1's panes and their transaction, stage 2's fetch, window assembly (a window closes when the watermark passes its end plus 5 s of lateness) and scoring.

| | upserts | p50 ms | p99 ms | max ms |
|---|---:|---:|---:|---:|
| verdict handed on by stage 2 → rule applied at the subscriber | ${fmt(lat.length)} | ${quantile(lat, 0.5).toFixed(0)} | ${quantile(lat, 0.99).toFixed(0)} | ${Math.max(...lat).toFixed(0)} |

${fmt(applied.size)} distinct verdicts named by upserts the subscriber applied, ${missing} of them not seen by the hook${unnamed ? `, ${unnamed} upserts without a verdict id` : ''}${expired ? `, ${expired} upserts already expired on arrival` : ''}; ${fmt(handedOn.size)} anomalous verdicts were handed on (an ASN or fingerprint verdict covered by its flagged pair makes no rule). Between \`startService\` resolving and the first slide: ${(setupMs / 1000).toFixed(1)} s (the subscriber's \`start()\` on the still empty topic is ready at once; its group join ends in the background well before the first rule, some ${fmt((18 * paceMs) / 1000)} s of wall time in, and it reads from the beginning either way). Load average (1 min) at the end: ${loadavg()[0]?.toFixed(2)}.
`;
}

/** The markdown of the edge section (without its title). */
export async function runEdgeBench(): Promise<string> {
  const a = throughput();
  const b = await latency();
  const c = await endToEnd();
  return `${a}\n${b}\n${c}`;
}
