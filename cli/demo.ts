import { Command } from 'commander';
import { createClient } from '@clickhouse/client';
import { Kafka } from 'kafkajs';
import { parseConfig } from '../config.js';
import { infraUp, type Endpoints } from '../infra/index.js';
import { logger } from '../logger.js';
import { Progress } from './progress.js';
import { startService } from './service.js';
import { parseDuration, simulateToKafka, type BurstCount } from './simulate.js';
import { DEFAULT_SCENARIOS, burstContains } from './traffic.js';

/** Options of {@link runDemo}. */
export interface DemoOptions {
  durationMs: number;
  rate: number;
  seed: number;
  /** Write output here (default stdout). */
  out?: NodeJS.WritableStream;
}

interface FlaggedEntity {
  entity_type: string;
  entity: string;
  windows: string;
  max_score: number;
  first_flagged: string;
  reasons: string[];
}

/**
 * The README's first command: installs and starts Kafka, ClickHouse and the schema registry,
 * simulates traffic with labelled bot bursts onto a fresh topic (in all three wire encodings,
 * plus a few undecodable messages), runs the live pipeline until every window has closed, and
 * prints what was found.
 */
export async function runDemo(opts: DemoOptions): Promise<void> {
  const out = opts.out ?? process.stdout;
  const say = (s = ''): boolean => out.write(s + '\n');
  say('burstwatch demo: installing and starting local Kafka, ClickHouse and schema registry (first run downloads them)…');
  const endpoints: Endpoints = await infraUp({ onProgress: (m: string) => process.stderr.write(`  [infra] ${m}\n`) });
  const id = new Date().toISOString().replace(/[-:.TZ]/g, '').slice(0, 14);
  const topic = `demo-request-logs-${id}`;
  const now = Date.now();
  const startMs = Math.floor((now - opts.durationMs) / 60_000) * 60_000;

  say(`\n1. Simulating ${Math.round(opts.durationMs / 60_000)} min of traffic at ~${opts.rate} req/s with labelled bot bursts → topic ${topic}`);
  const simProgress = new Progress('simulate', 100, '%');
  const sim = await simulateToKafka({
    topic,
    brokers: endpoints.kafkaBrokers,
    encoding: 'mixed',
    schemaRegistryUrl: endpoints.schemaRegistryUrl,
    partitions: 3,
    seed: opts.seed,
    startMs,
    durationMs: opts.durationMs,
    baseRps: opts.rate,
    scenarios: [...DEFAULT_SCENARIOS],
    onProgress: (p) => simProgress.update(Math.round(p.fraction * 100)),
  });
  simProgress.stop(100);
  // A few messages no decoder can read: they must end up on the dead-letter topic, not be lost.
  const kafka = new Kafka({ clientId: 'burstwatch-demo', brokers: endpoints.kafkaBrokers, logLevel: 1 });
  const producer = kafka.producer();
  await producer.connect();
  const garbage = [Buffer.from('{"not":"avro"}'), Buffer.from([0x00, 0x00, 0x0f, 0x42, 0x3f, 1, 2]), Buffer.alloc(0)];
  await producer.send({ topic, messages: garbage.map((value, i) => ({ key: `garbage-${i}`, value })) });
  await producer.disconnect();
  const total = sim.events + garbage.length;
  say(`   ${sim.events} requests written (plain, single-object and Confluent-framed Avro), plus ${garbage.length} undecodable messages`);

  say('\n2. Running the live pipeline (Kafka → windows → detectors → ClickHouse + edge-rules topic)…');
  const config = parseConfig({
    kafka: { brokers: endpoints.kafkaBrokers },
    input: { topic, group_id: `burstwatch-demo-${id}`, schema_registry: { url: endpoints.schemaRegistryUrl } },
    clickhouse: { url: endpoints.clickhouseUrl },
    windows: { idle_partition_ms: 3_000, idle_flush_ms: 3_000 },
    metrics: { port: 0 },
  });
  const service = await startService(config);
  const runProgress = new Progress('pipeline', total, 'messages');
  const started = Date.now();
  for (;;) {
    runProgress.update(service.stats.panes.messages);
    if (await service.settled(total)) break;
    if (service.fatal()) throw service.fatal();
    if (Date.now() - started > 10 * 60_000) throw new Error('the demo pipeline did not finish within 10 minutes');
    await new Promise((r) => setTimeout(r, 250));
  }
  runProgress.stop(service.stats.panes.messages);
  await service.stop();
  const secs = (Date.now() - started) / 1000;
  const s = service.stats;
  say(`   ${s.panes.decoded} records in ${secs.toFixed(1)} s; ${s.rules.windows} windows decided; ${s.windows.verdicts} verdicts (${s.windows.anomalous} anomalous); ` +
      `${s.rules.upserts} rule upserts, ${s.rules.deletes} expiries; ${s.panes.deadLettered} messages dead-lettered ` +
      `(${[...service.deadLetter.counts].map(([r, n]) => `${r}: ${n}`).join(', ')})`);

  const ch = createClient({ url: endpoints.clickhouseUrl });
  const db = config.clickhouse.database;
  const from = Math.floor(startMs / 1000);
  const to = Math.ceil((startMs + opts.durationMs) / 1000) + 120;
  const rs = await ch.query({
    query:
      `SELECT entity_type, entity, count() AS windows, max(score) AS max_score, toString(min(window_end)) AS first_flagged, ` +
      `argMax(reasons, score) AS reasons FROM ${db}.verdicts FINAL ` +
      `WHERE anomalous = 1 AND window_start >= toDateTime(${from}) AND window_start < toDateTime(${to}) ` +
      `GROUP BY entity_type, entity ORDER BY max_score DESC, windows DESC LIMIT 15`,
    format: 'JSONEachRow',
  });
  const flagged = (await rs.json()) as FlaggedEntity[];
  const rulesRs = await ch.query({
    query:
      `SELECT rule_id, argMax(action, event_time) AS action, argMax(mode, event_time) AS mode, toString(min(created_at)) AS created, ` +
      `toString(max(expires_at)) AS expires, countIf(op = 'upsert') AS upserts, countIf(op = 'delete') AS deletes ` +
      `FROM ${db}.rule_events FINAL WHERE event_time >= toDateTime(${from}) AND event_time < toDateTime(${to + 900}) GROUP BY rule_id ORDER BY created`,
    format: 'JSONEachRow',
  });
  const rules = (await rulesRs.json()) as { rule_id: string; action: string; mode: string; created: string; expires: string; upserts: string; deletes: string }[];
  await ch.close();

  say('\n3. Injected bursts and what was caught (latency in event time, from burst start to the end of the first flagged window):');
  for (const b of sim.bursts as BurstCount[]) {
    const hit = flagged.filter((f) => burstContains(f.entity_type, f.entity, b.match));
    const first = hit.map((f) => Date.parse(`${f.first_flagged.replace(' ', 'T')}Z`)).sort((a, c) => a - c)[0];
    const status = hit.length > 0 && first !== undefined ? `DETECTED after ${Math.round((first - b.startMs) / 1000)} s` : 'missed';
    say(`   - ${b.name} (${b.kind}, ${b.requests ?? 'n/a'} requests, asn ${b.match.asn ?? '*'} / ja4 ${b.match.ja4 ?? '*'}): ${status}`);
  }

  say('\n4. Top anomalous entities (from ClickHouse):');
  for (const f of flagged.slice(0, 10)) {
    say(`   - ${f.entity_type} ${f.entity}: score ${Number(f.max_score).toFixed(3)}, ${f.windows} windows, first at ${f.first_flagged} UTC`);
    for (const r of f.reasons.slice(0, 3)) say(`       · ${r}`);
  }
  const labelled = (f: FlaggedEntity): boolean => (sim.bursts as BurstCount[]).some((b) => b.kind === 'attack' && burstContains(f.entity_type, f.entity, b.match));
  const falseFlags = flagged.filter((f) => !labelled(f));
  say(`   false flags (anomalous entities whose traffic holds no injected attack): ${falseFlags.length === 0 ? 'none' : falseFlags.map((f) => `${f.entity_type} ${f.entity}`).join(', ')}`);

  say(`\n5. Rules published to Kafka topic '${config.edge_rules.topic}' (compacted; edge nodes follow it):`);
  for (const r of rules) say(`   - ${r.rule_id}: ${r.action} (${r.mode}), created ${r.created}, expires ${r.expires} UTC, ${r.upserts} upserts, ${r.deletes} deletes`);
  if (rules.length === 0) say('   (none)');

  const port = new URL(endpoints.clickhouseUrl).port;
  say('\n6. Look further in ClickHouse:');
  say(`   curl '${endpoints.clickhouseUrl}/' --data-binary "SELECT entity_type, entity, window_start, score, reasons FROM ${db}.verdicts FINAL WHERE anomalous ORDER BY score DESC LIMIT 20 FORMAT PrettyCompact"`);
  say(`   (or clickhouse-client --port ${port === '18123' ? '19000' : '<native port>'} --query "…"; tables: ${db}.verdicts, ${db}.window_aggregates, ${db}.rule_events)`);
  say(`   Topics: ${topic} (input), ${config.dead_letter.topic} (dead letters), ${config.edge_rules.topic} (rules). Stop the services with: npx burstwatch infra down`);
  logger.flush();
}

/** `burstwatch demo`. */
export function demoCommand(): Command {
  return new Command('demo')
    .description('Install and start local Kafka + ClickHouse + schema registry, simulate traffic with bot bursts, run the live pipeline, and show what it found.')
    .option('--duration <d>', 'event time to simulate, e.g. 10m or 600s (bursts need ≥ 9m for the 6-minute warm-up)', '10m')
    .option('--rate <rps>', 'benign requests per second', '300')
    .option('--seed <n>', 'random seed of the simulation', '42')
    .addHelpText('after', '\nThe services keep running afterwards; `npx burstwatch infra status` shows them, `infra down` stops them.\n')
    .action(async (o: { duration: string; rate: string; seed: string }) => {
      // A person is reading this terminal: keep structured logs to errors unless asked.
      if (!process.env.BURSTWATCH_LOG_LEVEL) logger.level = 'error';
      await runDemo({ durationMs: parseDuration(o.duration), rate: Number(o.rate), seed: Number(o.seed) });
    });
}
