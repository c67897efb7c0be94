/**
 * The e2e section: the live service on the real local Kafka and ClickHouse, each figure a ratio
 * against a peer run made by this script on the same topic (same records, same partitions):
 * - throughput: `startService` in this process against two peer kafkajs consumers on the same
 *   topic, fresh groups, the order rotating between rounds: a no-op consumer (eachBatch counts, no
 *   decoding) and a decode-only consumer (eachBatch decodes every record with the service's own
 *   decoder, as stage 1 does, and nothing else: the ceiling of any consumer that must decode the
 *   Avro records); the time until stage 1 has read every record and until `service.settled(N)`
 *   (all stages, ClickHouse written);
 * - scale-out: `burstwatch run` as one child process against two in one consumer group, done
 *   judged from outside (metrics, committed offsets, ClickHouse row counts that stop changing),
 *   and their outputs compared;
 * - recovery: one child killed with SIGKILL at half the input and started again, against the
 *   uninterrupted one-process runs' second half; no verdict lost (`count() … FINAL`).
 * Needs dist/ (children run dist/cli/main.js). Knobs: BENCH_E2E_RECORDS (default 300 000),
 * BENCH_E2E_PARTITIONS (input partitions, default 6), BENCH_E2E_RATE (benign requests per second
 * of event time, default 600, so 300 000 records span about 8 minutes), BENCH_E2E_ROUNDS (rounds
 * of the throughput runs, default 2), BENCH_E2E_SCALE_ROUNDS (rounds of the scale-out runs, default
 * 1: a child run takes a minute or more here), BENCH_E2E_TIMEOUT_S (per run, default 300).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { Kafka, logLevel, type Admin, type KafkaMessage } from 'kafkajs';
import { median } from 'simple-statistics';
import { createDecoder, startService } from '../cli/service.js';
import { DEFAULT_SCENARIOS, generateTraffic } from '../cli/traffic.js';
import { parseConfig, type Config } from '../config.js';
import { internalTopics } from '../consumers/topology.js';
import { DecodeError } from '../errors.js';
import { localEndpoints } from '../infra/index.js';
import { logger } from '../logger.js';
import { encodeSingleObject } from '../schemas/codec.js';
import { fingerprintBytes } from '../schemas/fingerprint.js';
import { requestLogType } from '../schemas/index.js';

const num = (name: string, dflt: number): number => (process.env[name] === undefined ? dflt : Number(process.env[name]));
const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');
const sec = (ms: number): string => (ms / 1000).toFixed(1);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let sectionStart = performance.now();
const progress = (line: string): void => void process.stderr.write(`bench: e2e [${sec(performance.now() - sectionStart)} s]: ${line}\n`);
const here = fileURLToPath(new URL('.', import.meta.url));

/** What the section produced once and every run reads. */
interface Input {
  messages: { key: string; value: Buffer }[];
  firstMs: number;
  lastMs: number;
  attacks: number;
  bytes: number;
}

/**
 * The first `n` requests of `generateTraffic` (seed 7, the three default attacks) at `rate`
 * benign requests/s, Avro single-object encoded, keyed by client IP. Event time ends a minute
 * before now: the live service dead-letters records more than input.max_future_ms ahead of its clock.
 */
function makeInput(n: number, rate: number): Input {
  const durationMs = (Math.ceil(n / rate / 60) + 2) * 60_000;
  const startMs = Math.floor((Date.now() - durationMs) / 60_000) * 60_000 - 60_000;
  const messages: Input['messages'] = [];
  let firstMs = Infinity;
  let lastMs = -Infinity;
  let attacks = 0;
  let bytes = 0;
  const fingerprint = fingerprintBytes(requestLogType); // computed once, not per record
  for (const e of generateTraffic({ seed: 7, startMs, durationMs, baseRps: rate, scenarios: [...DEFAULT_SCENARIOS] })) {
    if (messages.length >= n) break;
    const value = encodeSingleObject(requestLogType, e.log, fingerprint);
    messages.push({ key: e.log.client_ip, value });
    firstMs = Math.min(firstMs, e.log.timestamp);
    lastMs = Math.max(lastMs, e.log.timestamp);
    if (e.label) attacks++;
    bytes += value.length;
  }
  if (messages.length < n) throw new Error(`e2e bench: generateTraffic gave ${messages.length} records, fewer than ${n}`);
  return { messages, firstMs, lastMs, attacks, bytes };
}

/** The run's configuration: its own group (so its own internal topics), dead-letter and edge-rule topics and database. */
function configFor(topic: string, group: string, database: string, metricsPort: number): Record<string, unknown> {
  return {
    kafka: { brokers: localEndpoints.kafkaBrokers },
    input: { topic, group_id: group },
    dead_letter: { topic: `${group}-dlq` },
    edge_rules: { topic: `${group}-edge-rules` },
    clickhouse: { url: localEndpoints.clickhouseUrl, database },
    windows: { idle_partition_ms: 2_000, idle_flush_ms: 2_000 },
    metrics: { port: metricsPort },
  };
}

/** Every topic a run of group `group` creates. */
function topicsOf(group: string): string[] {
  const t = internalTopics(parseConfig({}).topology, group);
  return [t.repartition, t.changelog, t.verdicts, t.rulesChangelog, `${group}-dlq`, `${group}-edge-rules`];
}

/** What a run wrote to ClickHouse, deduplicated as analysts read it (ReplacingMergeTree FINAL). */
interface Output {
  aggregates: number;
  verdicts: number;
  anomalous: number;
  ruleEvents: number;
}

/** The first row's values, in column order (ClickHouse 18.16 has no JSONCompactEachRow). */
async function scalar(ch: ClickHouseClient, query: string): Promise<number[]> {
  const rs = await ch.query({ query, format: 'JSONEachRow' });
  const rows = (await rs.json()) as Record<string, unknown>[];
  return Object.values(rows[0] ?? {}).map(Number);
}

async function outputOf(ch: ClickHouseClient, db: string): Promise<Output> {
  const [aggregates = NaN] = await scalar(ch, `SELECT count() FROM ${db}.window_aggregates FINAL`);
  const [verdicts = NaN, anomalous = NaN] = await scalar(ch, `SELECT count() AS n, countIf(anomalous = 1) AS a FROM ${db}.verdicts FINAL`);
  const [ruleEvents = NaN] = await scalar(ch, `SELECT count() FROM ${db}.rule_events FINAL`);
  return { aggregates, verdicts, anomalous, ruleEvents };
}

/** Rows inserted so far (no FINAL: it changes with every insert, duplicates included). */
async function rowsSoFar(ch: ClickHouseClient, db: string): Promise<string | null> {
  try {
    const [a = 0] = await scalar(ch, `SELECT count() FROM ${db}.window_aggregates`);
    const [v = 0] = await scalar(ch, `SELECT count() FROM ${db}.verdicts`);
    const [r = 0] = await scalar(ch, `SELECT count() FROM ${db}.rule_events`);
    return a > 0 ? `${a}/${v}/${r}` : null;
  } catch {
    return null; // the tables do not exist yet
  }
}

// ---------------------------------------------------------------------------------------
// 1. Throughput: the service in this process against a no-op and a decode-only consumer

/** One timed run, ms from its start. */
interface Timing {
  /** Until the first record was consumed. */
  firstMs: number;
  /** Until all N were consumed (stage 1 of the service). */
  allMs: number;
  /** Until everything went through all stages (the peer consumers: = allMs). */
  settledMs: number;
}

/**
 * A plain kafkajs consumer in a new group (`fromBeginning`, read_committed, `maxBytesPerPartition`,
 * default auto-commit) whose eachBatch is the handler `make()` returns; timed from before `make()`
 * and `connect()` until the handler has returned for N records. `kind` names it in group ids and errors.
 */
async function peerRun(
  kind: string,
  make: () => (messages: KafkaMessage[]) => Promise<void> | void,
  o: { kafka: Kafka; topic: string; n: number; maxBytesPerPartition: number; timeoutMs: number },
): Promise<Timing> {
  const { kafka, topic, n, maxBytesPerPartition, timeoutMs } = o;
  const consumer = kafka.consumer({ groupId: `bench-e2e-${kind}-${randomBytes(4).toString('hex')}`, maxBytesPerPartition, readUncommitted: false, allowAutoTopicCreation: false });
  let count = 0;
  let firstMs = NaN;
  let allMs = NaN;
  let done = (): void => undefined;
  let fail = (_err: unknown): void => undefined;
  const all = new Promise<void>((resolve, reject) => {
    done = resolve;
    fail = reject;
  });
  const t0 = performance.now();
  const onBatch = make();
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachBatch: async ({ batch }) => {
        if (count === 0) firstMs = performance.now() - t0;
        try {
          await onBatch(batch.messages);
        } catch (err) {
          fail(err); // not retried: the run is void
          return;
        }
        count += batch.messages.length;
        if (count >= n && Number.isNaN(allMs)) {
          allMs = performance.now() - t0;
          done();
        }
      },
    });
    const timer = sleep(timeoutMs).then(() => {
      throw new Error(`e2e bench: the ${kind} consumer read ${count} of ${n} records in ${timeoutMs / 1000} s`);
    });
    await Promise.race([all, timer]);
  } finally {
    await consumer.disconnect().catch(() => undefined);
  }
  return { firstMs, allMs, settledMs: allMs };
}

/** The three runs of each throughput round. */
const KINDS = ['noop', 'decode', 'service'] as const;
type Kind = (typeof KINDS)[number];
const KIND_NAMES: Record<Kind, string> = { noop: 'no-op', decode: 'decode-only', service: 'service' };

/** The no-op consumer: eachBatch only counts the batch's messages. */
function noopRun(kafka: Kafka, topic: string, n: number, maxBytesPerPartition: number, timeoutMs: number): Promise<Timing> {
  return peerRun('noop', () => () => undefined, { kafka, topic, n, maxBytesPerPartition, timeoutMs });
}

interface DecodeRun extends Timing {
  /** Records decoded to a request log. */
  decoded: number;
  /** Records that threw DecodeError (stage 1 would dead-letter them); 0 expected. */
  decodeErrors: number;
}

/**
 * The decode-only consumer: the no-op consumer whose eachBatch decodes every record with the
 * service's own decoder (`createDecoder` on the run's parsed config), as stage 1's
 * `PaneTask.handle` does: `prepare` on the batch's values, then `decode` on each. Nothing else
 * (no windows, no output, no timestamp check). The decoder is built inside the clock, as the
 * service's is inside `startService`.
 */
async function decodeRun(kafka: Kafka, topic: string, config: Config, n: number, maxBytesPerPartition: number, timeoutMs: number): Promise<DecodeRun> {
  let decoded = 0;
  let decodeErrors = 0;
  const timing = await peerRun(
    'decode',
    () => {
      const decoder = createDecoder(config);
      return async (messages) => {
        await decoder.prepare(messages.map((m) => m.value));
        for (const m of messages) {
          try {
            decoder.decode(m.value);
            decoded++;
          } catch (err) {
            if (!(err instanceof DecodeError)) throw err;
            decodeErrors++;
          }
        }
      };
    },
    { kafka, topic, n, maxBytesPerPartition, timeoutMs },
  );
  return { ...timing, decoded, decodeErrors };
}

interface ServiceRun extends Timing {
  /** Until startService resolved (tables, topics, consumers created). */
  startedMs: number;
  /** Until all three stages had joined their groups. */
  readyMs: number;
  /** How long `service.stop()` took after the run (not in the figures). */
  stopMs: number;
  stats: { decoded: number; deadLettered: number; late: number; partials: number; bundles: number; windowsClosed: number; verdicts: number; anomalous: number; transactions: number };
}

async function serviceRun(topic: string, group: string, database: string, n: number, timeoutMs: number): Promise<ServiceRun> {
  const config = parseConfig(configFor(topic, group, database, 0));
  const t0 = performance.now();
  const service = await startService(config);
  const startedMs = performance.now() - t0;
  let readyMs = NaN;
  let firstMs = NaN;
  let allMs = NaN;
  let settledMs = NaN;
  let stopMs = NaN;
  try {
    for (;;) {
      const at = performance.now() - t0;
      if (Number.isNaN(readyMs) && service.panes.ready && service.windows.ready && service.rules.ready) readyMs = at;
      if (Number.isNaN(firstMs) && service.stats.panes.messages > 0) firstMs = at;
      if (Number.isNaN(allMs) && service.stats.panes.messages >= n) allMs = at;
      if (!Number.isNaN(allMs) && (await service.settled(n))) {
        settledMs = performance.now() - t0;
        break;
      }
      const fatal = service.fatal();
      if (fatal) throw new Error(`e2e bench: the service stopped: ${(fatal as Error).message}`);
      if (at > timeoutMs) throw new Error(`e2e bench: the service read ${service.stats.panes.messages} of ${n} records and had not settled after ${timeoutMs / 1000} s`);
      // Cheap counter reads while reading; settled() asks the broker, so less often.
      await sleep(Number.isNaN(allMs) ? 20 : 100);
    }
  } finally {
    const t1 = performance.now();
    await service.stop();
    stopMs = performance.now() - t1;
  }
  const s = service.stats;
  return {
    startedMs, readyMs, firstMs, allMs, settledMs, stopMs,
    stats: {
      decoded: s.panes.decoded, deadLettered: s.panes.deadLettered, late: s.panes.late, partials: s.panes.partials, bundles: s.panes.bundles, windowsClosed: s.windows.windowsClosed,
      verdicts: s.windows.verdicts, anomalous: s.windows.anomalous,
      transactions: service.panes.stats.transactions + service.windows.stats.transactions + service.rules.stats.transactions,
    },
  };
}

// ---------------------------------------------------------------------------------------
// 2 and 3. Child processes, judged from outside

/** A free TCP port on 127.0.0.1 (for a child's metrics). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

interface Child {
  proc: ChildProcess;
  port: number;
  logFile: string;
  exited: Promise<string>;
}

/** `node dist/cli/main.js run --config <file>`, its logs (JSON lines on stderr) to `logFile`. */
function spawnService(mainJs: string, configFile: string, port: number, logFile: string): Child {
  const fd = openSync(logFile, 'a');
  const proc = spawn(process.execPath, [mainJs, 'run', '--config', configFile], { stdio: ['ignore', 'ignore', fd], env: process.env });
  closeSync(fd);
  const exited = new Promise<string>((resolve) => proc.on('exit', (code, signal) => resolve(signal ?? `code ${code}`)));
  return { proc, port, logFile, exited };
}

/** How a child ended after SIGTERM: its exit ('code 0', 'code 1', 'SIGKILL') and how long it took, ms. */
interface Stopped {
  how: string;
  ms: number;
}

/** SIGTERM, and SIGKILL if it has not exited within 20 s (it gives itself 10 s). */
async function stopChild(c: Child): Promise<Stopped> {
  if (c.proc.exitCode !== null || c.proc.signalCode !== null) return { how: `already exited (${await c.exited})`, ms: 0 };
  const t0 = performance.now();
  c.proc.kill('SIGTERM');
  const timer = setTimeout(() => c.proc.kill('SIGKILL'), 20_000);
  const how = await c.exited;
  clearTimeout(timer);
  return { how, ms: performance.now() - t0 };
}

/** Prometheus text → samples by metric name. */
function parseMetrics(text: string): Map<string, { labels: string; value: number }[]> {
  const out = new Map<string, { labels: string; value: number }[]>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const list = out.get(m[1] as string) ?? [];
    list.push({ labels: m[2] ?? '', value: Number(m[3]) });
    out.set(m[1] as string, list);
  }
  return out;
}

async function scrape(port: number): Promise<Map<string, { labels: string; value: number }[]> | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(2_000) });
    return res.ok ? parseMetrics(await res.text()) : null;
  } catch {
    return null;
  }
}

async function ready(port: number): Promise<boolean> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1_000) })).status === 200;
  } catch {
    return false;
  }
}

const total = (ms: Map<string, { labels: string; value: number }[]>, name: string): number => (ms.get(name) ?? []).reduce((a, s) => a + s.value, 0);

/** Whether the group has committed, on every partition of `topic`, the partition's high watermark. */
async function committedToEnd(admin: Admin, group: string, topic: string): Promise<{ done: boolean; committed: number }> {
  const highs = await admin.fetchTopicOffsets(topic);
  const [t] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  let committed = 0;
  let done = true;
  for (const h of highs) {
    const c = Number(t?.partitions.find((p) => p.partition === h.partition)?.offset ?? -1);
    committed += Math.max(0, c);
    if (c < Number(h.high)) done = false;
  }
  return { done, committed };
}

/** What a watched run saw, ms from its start. */
interface Watched {
  /** First scrape at which the summed burstwatch_messages_total reached N/2 (NaN if never). */
  halfMs: number;
  /** First scrape at which it reached N (with two processes, re-reads after the rebalance count too). */
  allMs: number;
  /** First sample of the final, stable state. */
  doneMs: number;
  /** Summed burstwatch_messages_total at the end. */
  messages: number;
}

const STABLE_MS = 3_000;

/**
 * Polls every 250 ms until the run is done as an operator would judge it from outside: every
 * child answers /readyz with 200 and /metrics with all consumer lags 0, no open pane and no
 * batch in hand (burstwatch_window_entities does not fall to 0 once all windows are closed, so
 * it is no sign);
 * stage 1's group has committed the input's high watermark on every partition; and the
 * ClickHouse row counts (window aggregates, verdicts, rule events) have not changed for 3 s.
 * The done time is the first sample of that stable state.
 */
async function watchDone(children: Child[], o: { admin: Admin; ch: ClickHouseClient; group: string; topic: string; db: string; n: number; t0: number; timeoutMs: number }): Promise<Watched> {
  let halfMs = NaN;
  let allMs = NaN;
  let streak: { at: number; rows: string } | null = null;
  let messages = 0;
  let why = 'no scrape yet';
  for (;;) {
    const at = performance.now() - o.t0;
    for (const c of children) {
      if (c.proc.exitCode !== null || c.proc.signalCode !== null) throw new Error(`e2e bench: a service child exited (${await c.exited}); its log: ${c.logFile}`);
    }
    if (at > o.timeoutMs) throw new Error(`e2e bench: not done after ${o.timeoutMs / 1000} s (${messages} messages read; last: ${why}; logs: ${children.map((c) => c.logFile).join(', ')})`);
    const scraped = await Promise.all(children.map((c) => scrape(c.port)));
    let quiet = scraped.every((m) => m !== null);
    why = 'a /metrics scrape failed';
    if (quiet) {
      why = 'lag, open panes or a batch in hand';
      const ms = scraped as Map<string, { labels: string; value: number }[]>[];
      messages = ms.reduce((a, m) => a + total(m, 'burstwatch_messages_total'), 0);
      if (Number.isNaN(halfMs) && messages >= o.n / 2) halfMs = at;
      if (Number.isNaN(allMs) && messages >= o.n) allMs = at;
      // A stage's lag series appear with its first batch, so after a rebalance onto partitions
      // already consumed there are none: stage 1 is judged by its committed offsets below.
      quiet =
        ms.every((m) => (m.get('burstwatch_consumer_lag_messages') ?? []).every((x) => x.value === 0)) &&
        ms.every((m) => total(m, 'burstwatch_open_panes') === 0 && total(m, 'burstwatch_stage_busy_seconds') === 0);
    }
    if (quiet) {
      why = '/readyz not 200';
      quiet = (await Promise.all(children.map((c) => ready(c.port)))).every(Boolean);
    }
    if (quiet) {
      const c = await committedToEnd(o.admin, o.group, o.topic);
      why = `stage 1 committed ${c.committed} of ${o.n} input offsets`;
      quiet = c.done;
    }
    const rows = quiet ? await rowsSoFar(o.ch, o.db) : null;
    if (quiet) why = `ClickHouse rows (aggregates/verdicts/rule events) ${rows ?? 'none'}, not yet stable for ${STABLE_MS / 1000} s`;
    if (rows === null) streak = null;
    else if (!streak || streak.rows !== rows) streak = { at, rows };
    else if (at - streak.at >= STABLE_MS) return { halfMs, allMs, doneMs: streak.at, messages };
    await sleep(250);
  }
}

/** Counts of warn and error lines in a child's log, with their distinct messages. */
function logSummary(files: string[]): { warn: number; error: number; messages: string[] } {
  let warn = 0;
  let error = 0;
  const messages = new Map<string, number>();
  for (const f of files) {
    if (!existsSync(f)) continue;
    for (const line of readFileSync(f, 'utf8').split('\n')) {
      if (line.trim() === '') continue;
      let level = 0;
      let msg = line.slice(0, 160);
      try {
        const j = JSON.parse(line) as { level?: number; msg?: string; err?: unknown; error?: unknown };
        level = j.level ?? 0;
        const err = j.err ?? j.error;
        msg = `${(j.msg ?? '').slice(0, 80)}${err ? `: ${String(typeof err === 'object' ? (err as { message?: string }).message : err).slice(0, 80)}` : ''}`;
      } catch {
        level = 50; // not a log line: a crash's stack trace
      }
      if (level < 40) continue;
      if (level >= 50) error++;
      else warn++;
      const key = `${level >= 50 ? 'error' : 'warn'}: ${msg}`;
      messages.set(key, (messages.get(key) ?? 0) + 1);
    }
  }
  return { warn, error, messages: [...messages].map(([m, k]) => `${m} (×${k})`) };
}

// ---------------------------------------------------------------------------------------

/** The markdown of the e2e section (without its title). */
export async function runE2eBench(): Promise<string> {
  const n = num('BENCH_E2E_RECORDS', 300_000);
  const partitions = num('BENCH_E2E_PARTITIONS', 6);
  const rate = num('BENCH_E2E_RATE', 600);
  const rounds = num('BENCH_E2E_ROUNDS', 2);
  const scaleRounds = num('BENCH_E2E_SCALE_ROUNDS', 1);
  const timeoutMs = num('BENCH_E2E_TIMEOUT_S', 300) * 1000;
  sectionStart = performance.now();
  const mainJs = join(here, '..', 'cli', 'main.js');
  if (!here.includes('/dist/') || !existsSync(mainJs)) throw new Error(`e2e bench: ${mainJs} not found: run the bench from dist/ (npm run build)`);
  const id = randomBytes(4).toString('hex');
  const topic = `bench-e2e-in-${id}`;
  const groups: string[] = [];
  const databases: string[] = [];
  const children: Child[] = [];
  const tmp = mkdtempSync(join(tmpdir(), 'burstwatch-e2e-'));
  const kafka = new Kafka({ clientId: 'bench-e2e', brokers: localEndpoints.kafkaBrokers, logLevel: logLevel.NOTHING, connectionTimeout: 5000 });
  const admin = kafka.admin();
  const ch = createClient({ url: localEndpoints.clickhouseUrl, request_timeout: 120_000, clickhouse_settings: {} });
  try {
    await admin.connect();
    await admin.listTopics();
  } catch (err) {
    await ch.close();
    throw new Error(`e2e bench: no Kafka at ${localEndpoints.kafkaBrokers.join(',')} (${(err as Error).message}): start it with \`node dist/cli/main.js infra up\``);
  }
  const load0 = loadavg();
  const logLevelBefore = logger.level;
  try {
    // The input, produced once.
    let t = performance.now();
    const input = makeInput(n, rate);
    const genMs = performance.now() - t;
    t = performance.now();
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }] });
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    for (let i = 0; i < n; i += 5000) await producer.send({ topic, acks: -1, messages: input.messages.slice(i, i + 5000) });
    await producer.disconnect();
    const produceMs = performance.now() - t;
    const eventMin = (input.lastMs - input.firstMs) / 60_000;
    progress(`${fmt(n)} records (${eventMin.toFixed(1)} min of event time, ${(input.bytes / 1e6).toFixed(0)} MB) generated in ${sec(genMs)} s, produced to ${topic} (${partitions} partitions) in ${sec(produceMs)} s`);
    const maxBytes = parseConfig({}).input.max_bytes_per_partition;

    // 1. Throughput against the no-op and the decode-only consumers; the order rotates between
    // rounds (round r + 1 is round r's order with its last run moved to the front).
    if (process.env.BURSTWATCH_LOG_LEVEL === undefined) logger.level = 'warn';
    const noop: Timing[] = [];
    const decode: DecodeRun[] = [];
    const svc: ServiceRun[] = [];
    const svcOut: Output[] = [];
    const orders: Kind[][] = [];
    for (let r = 0; r < rounds; r++) {
      const order = KINDS.map((_, i) => KINDS[(((i - r) % KINDS.length) + KINDS.length) % KINDS.length] as Kind);
      orders.push(order);
      for (const which of order) {
        if (which === 'noop') {
          const x = await noopRun(kafka, topic, n, maxBytes, timeoutMs);
          noop.push(x);
          progress(`round ${r + 1}/${rounds}: no-op consumer: first record ${sec(x.firstMs)} s, all ${sec(x.allMs)} s`);
        } else if (which === 'decode') {
          // The service run's configuration (its group and database are not used: the decoder only reads input.*).
          const config = parseConfig(configFor(topic, `bench-e2e-${id}-decode${r}`, `bw_bench_e2e_${id}_decode${r}`, 0));
          const x = await decodeRun(kafka, topic, config, n, maxBytes, timeoutMs);
          decode.push(x);
          progress(`round ${r + 1}/${rounds}: decode-only consumer: first record ${sec(x.firstMs)} s, all ${sec(x.allMs)} s (${fmt(x.decoded)} decoded, ${fmt(x.decodeErrors)} DecodeErrors)`);
        } else {
          const group = `bench-e2e-${id}-svc${r}`;
          const db = `bw_bench_e2e_${id}_svc${r}`;
          groups.push(group);
          databases.push(db);
          const x = await serviceRun(topic, group, db, n, timeoutMs);
          svc.push(x);
          svcOut.push(await outputOf(ch, db));
          progress(`round ${r + 1}/${rounds}: service: started ${sec(x.startedMs)} s, ready ${sec(x.readyMs)} s, first record ${sec(x.firstMs)} s, all read ${sec(x.allMs)} s, settled ${sec(x.settledMs)} s; stop() took ${sec(x.stopMs)} s`);
        }
      }
    }
    logger.level = logLevelBefore;

    // 2. Scale-out: one child process against two in one group; the order alternates.
    const scale: { procs: number; w: Watched; out: Output; logs: string[] }[] = [];
    const stopped: Stopped[] = [];
    const runChildren = async (procs: number, tag: string): Promise<{ w: Watched; out: Output; logs: string[] }> => {
      const group = `bench-e2e-${id}-${tag}`;
      const db = `bw_bench_e2e_${id}_${tag.replace(/-/g, '_')}`;
      groups.push(group);
      databases.push(db);
      const mine: Child[] = [];
      const t0 = performance.now();
      for (let k = 0; k < procs; k++) {
        const port = await freePort();
        const file = join(tmp, `${tag}-${k}.json`);
        writeFileSync(file, JSON.stringify(configFor(topic, group, db, port)));
        const c = spawnService(mainJs, file, port, join(tmp, `${tag}-${k}.log`));
        mine.push(c);
        children.push(c);
      }
      try {
        const w = await watchDone(mine, { admin, ch, group, topic, db, n, t0, timeoutMs });
        const stops = await Promise.all(mine.map(stopChild));
        stopped.push(...stops);
        progress(`${tag}: SIGTERM: ${stops.map((x) => `${x.how} after ${sec(x.ms)} s`).join(', ')}`);
        return { w, out: await outputOf(ch, db), logs: mine.map((c) => c.logFile) };
      } finally {
        await Promise.all(mine.map(stopChild));
      }
    };
    for (let r = 0; r < scaleRounds; r++) {
      for (const procs of r % 2 === 0 ? [1, 2] : [2, 1]) {
        const x = await runChildren(procs, `p${procs}-r${r}`);
        scale.push({ procs, ...x });
        progress(`round ${r + 1}/${scaleRounds}: ${procs} process${procs > 1 ? 'es' : ''}: half read ${sec(x.w.halfMs)} s, all read ${sec(x.w.allMs)} s, done ${sec(x.w.doneMs)} s (${fmt(x.w.messages)} messages read, ${fmt(x.out.verdicts)} verdicts)`);
      }
    }

    // 3. Recovery: SIGKILL at half the input, then the same config again.
    const tag = 'kill';
    const group = `bench-e2e-${id}-${tag}`;
    const db = `bw_bench_e2e_${id}_${tag}`;
    groups.push(group);
    databases.push(db);
    const port = await freePort();
    const file = join(tmp, `${tag}.json`);
    writeFileSync(file, JSON.stringify(configFor(topic, group, db, port)));
    const first = spawnService(mainJs, file, port, join(tmp, `${tag}-0.log`));
    children.push(first);
    const k0 = performance.now();
    let atKill = 0;
    for (;;) {
      if (first.proc.exitCode !== null || first.proc.signalCode !== null) throw new Error(`e2e bench: the child to be killed exited by itself (${await first.exited}); log ${first.logFile}`);
      if (performance.now() - k0 > timeoutMs) throw new Error(`e2e bench: the child to be killed did not read half the input in ${timeoutMs / 1000} s`);
      const m = await scrape(port);
      atKill = m ? total(m, 'burstwatch_messages_total') : 0;
      if (atKill >= n / 2) break;
      await sleep(100);
    }
    first.proc.kill('SIGKILL');
    const killedAfterMs = performance.now() - k0;
    await first.exited;
    const durable = (await committedToEnd(admin, group, topic)).committed;
    const rowsAtKill = await rowsSoFar(ch, db);
    progress(`recovery: SIGKILL after ${sec(killedAfterMs)} s with ${fmt(atKill)} records read, ${fmt(durable)} committed; restarting`);
    const second = spawnService(mainJs, file, port, join(tmp, `${tag}-1.log`));
    children.push(second);
    const s0 = performance.now();
    const readyz = (async (): Promise<number> => {
      for (;;) {
        try {
          const res = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1_000) });
          if (res.status === 200) return performance.now() - s0;
        } catch {
          // not listening yet
        }
        if (performance.now() - s0 > timeoutMs) return NaN;
        await sleep(50);
      }
    })();
    const recovered = await watchDone([second], { admin, ch, group, topic, db, n, t0: s0, timeoutMs });
    const readyMs = await readyz;
    const secondStop = await stopChild(second);
    stopped.push(secondStop);
    const killOut = await outputOf(ch, db);
    progress(`recovery: /readyz 200 after ${sec(readyMs)} s, done ${sec(recovered.doneMs)} s after the restart (${fmt(recovered.messages)} records read by the new process); stopped with ${secondStop.how} after ${sec(secondStop.ms)} s`);

    return markdown({
      n, partitions, rate, rounds, scaleRounds, input, genMs, produceMs, noop, decode, svc, svcOut, orders, scale,
      recovery: { killedAfterMs, atKill, durable, rowsAtKill, readyMs, recovered, out: killOut, logs: [first.logFile, second.logFile] },
      stopped, load0, load1: loadavg(),
    });
  } finally {
    logger.level = logLevelBefore;
    await Promise.all(children.map(stopChild));
    const topics = [topic, ...groups.flatMap(topicsOf)];
    await admin.deleteTopics({ topics }).catch((err: unknown) => progress(`could not delete topics: ${(err as Error).message}`));
    await admin.disconnect();
    const d0 = performance.now();
    await Promise.all(
      databases.map((db) => ch.command({ query: `DROP DATABASE IF EXISTS ${db}` }).catch((err: unknown) => progress(`could not drop ${db}: ${(err as Error).message}`))),
    );
    progress(`deleted ${topics.length} topics; dropped ${databases.length} databases in ${sec(performance.now() - d0)} s`);
    await ch.close();
    if (process.env.BENCH_E2E_KEEP_LOGS === undefined) rmSync(tmp, { recursive: true, force: true });
  }
}

interface Results {
  n: number;
  partitions: number;
  rate: number;
  rounds: number;
  scaleRounds: number;
  input: Input;
  genMs: number;
  produceMs: number;
  noop: Timing[];
  decode: DecodeRun[];
  svc: ServiceRun[];
  svcOut: Output[];
  /** The order of the throughput runs in each round. */
  orders: Kind[][];
  scale: { procs: number; w: Watched; out: Output; logs: string[] }[];
  recovery: { killedAfterMs: number; atKill: number; durable: number; rowsAtKill: string | null; readyMs: number; recovered: Watched; out: Output; logs: string[] };
  /** Every child stopped with SIGTERM at the end of its run. */
  stopped: Stopped[];
  load0: number[];
  load1: number[];
}

/** '5 exited with code 0 in 1.2–3.4 s; 2 with code 1 in 10.0–10.1 s'. */
function stopSummary(stops: Stopped[]): string {
  const by = new Map<string, number[]>();
  for (const x of stops) by.set(x.how, [...(by.get(x.how) ?? []), x.ms]);
  return [...by]
    .map(([how, ms]) => `${ms.length} ${how.startsWith('code') ? `exited with ${how}` : `ended by ${how}`} after ${sec(Math.min(...ms))}–${sec(Math.max(...ms))} s`)
    .join('; ');
}

function markdown(r: Results): string {
  const { n } = r;
  const rateOf = (ms: number): number => n / (ms / 1000);
  const best = (xs: number[]): number => Math.max(...xs);
  const med = (xs: number[]): number => median(xs);
  const list = (xs: number[]): string => xs.map(fmt).join(', ');

  // 1. Throughput
  const noopAll = r.noop.map((x) => rateOf(x.allMs));
  const noopSteady = r.noop.map((x) => rateOf(x.allMs - x.firstMs));
  const decAll = r.decode.map((x) => rateOf(x.allMs));
  const decSteady = r.decode.map((x) => rateOf(x.allMs - x.firstMs));
  const decoded = r.decode.map((x) => `${fmt(x.decoded)}/${fmt(x.decodeErrors)}`).join(', ');
  const orders = r.orders.map((o, i) => `round ${i + 1} ${o.map((k) => KIND_NAMES[k]).join(', ')}`).join('; ');
  const inAll = r.svc.map((x) => rateOf(x.allMs));
  const inSteady = r.svc.map((x) => rateOf(x.allMs - x.firstMs));
  const e2e = r.svc.map((x) => rateOf(x.settledMs));
  const ratio = (a: number[], b: number[]): string => `${(best(a) / best(b)).toFixed(2)} / ${(med(a) / med(b)).toFixed(2)}`;
  const pass = (a: number[], b: number[]): string => (med(a) / med(b) >= 0.7 ? 'PASS' : 'FAIL');
  const s0 = r.svc[0] as ServiceRun;
  const outs = r.svcOut.map((o) => `${fmt(o.aggregates)}/${fmt(o.verdicts)}`).join(', ');
  const phases = r.svc
    .map((x) => `started ${sec(x.startedMs)}, ready ${sec(x.readyMs)}, first record ${sec(x.firstMs)}, all read ${sec(x.allMs)}, settled ${sec(x.settledMs)}`)
    .join('; ');

  // 2. Scale-out
  const one = r.scale.filter((x) => x.procs === 1);
  const two = r.scale.filter((x) => x.procs === 2);
  const oneRates = one.map((x) => rateOf(x.w.doneMs));
  const twoRates = two.map((x) => rateOf(x.w.doneMs));
  const ref = one[0]?.out as Output;
  const agree = (o: Output): boolean => o.aggregates === ref.aggregates && o.verdicts === ref.verdicts;
  const outRow = (name: string, o: Output): string => `| ${name} | ${fmt(o.aggregates)} | ${fmt(o.verdicts)} | ${fmt(o.anomalous)} | ${fmt(o.ruleEvents)} |`;

  // 3. Recovery
  const rec = r.recovery;
  const secondHalf = one.map((x) => x.w.doneMs - x.w.halfMs);
  const restartCost = rec.recovered.doneMs / med(secondHalf);
  const lost = rec.out.verdicts < ref.verdicts ? ref.verdicts - rec.out.verdicts : 0;
  const logs = logSummary([...r.scale.flatMap((x) => x.logs), ...rec.logs]);

  return `Kafka: the local single broker of \`burstwatch infra\` (${localEndpoints.kafkaBrokers.join(',')}); ClickHouse: the local 18.16 server (${localEndpoints.clickhouseUrl}). Both share the machine's cores with the bench and the service.

Input: the first ${fmt(n)} requests of \`generateTraffic\` (seed 7, ${r.rate} benign requests/s and the three default attacks; ${fmt(r.input.attacks)} attack requests), ${((r.input.lastMs - r.input.firstMs) / 60_000).toFixed(1)} minutes of event time ending a minute or more before the run, Avro single-object encoded (${fmt(r.input.bytes / n)} bytes a record, ${(r.input.bytes / 1e6).toFixed(0)} MB), keyed by client IP, produced once (idempotent producer, acks=all, ${sec(r.produceMs)} s) to a new topic of ${r.partitions} partitions. Every run below reads that same topic from the beginning in a consumer group of its own; every service run has its own internal topics (from its group id), dead-letter and edge-rule topics and ClickHouse database, and runs with \`windows.idle_partition_ms\` and \`idle_flush_ms\` at 2 000 (the rest defaults: 60 s windows sliding by 10 s, 5 s lateness, ${parseConfig({}).topology.repartition_partitions} stage-2 partitions).

### Throughput: the live service against a no-op and a decode-only consumer

- **no-op consumer**: a kafkajs consumer in a new group (\`fromBeginning\`, read_committed, the service's \`maxBytesPerPartition\`), \`eachBatch\` that only counts \`batch.messages.length\` (no decoding, default auto-commit). Clock: from before \`connect()\` until the count reaches ${fmt(n)}.
- **decode-only consumer**: the same consumer (options, a new group each run), but \`eachBatch\` decodes every record with the service's own decoder, as stage 1 does: \`createDecoder(parseConfig(…))\` on the service run's configuration, then per batch \`await decoder.prepare(values)\` and \`decoder.decode(value)\` for each message, counting DecodeErrors apart; nothing else (no timestamp check, no panes, no output). It is the ceiling of any consumer that must decode the Avro records. Clock: from before \`createDecoder\` and \`connect()\` until ${fmt(n)} records have been decoded (decoded/DecodeErrors per round: ${decoded}).
- **service**: \`startService(parseConfig(…))\` in the bench process (\`metrics.port\` 0), the three stages of docs/scaling.md §4. Clock: from before \`startService\` (which creates the ClickHouse tables and the internal topics) until \`service.stats.panes.messages\` reaches ${fmt(n)} (**input**: stage 1 has read everything; polled every 20 ms), and until \`await service.settled(${n})\` is true (**end to end**: every stage consumed to its high watermarks, no pane open, no window waiting, so every window aggregate and verdict is in ClickHouse; polled every 100 ms).
- "steady" figures start the clock at the first record consumed instead, leaving out group joins and the service's set-up.

Rounds: ${r.rounds}; the order rotates (${orders}). Each figure is records/s = ${fmt(n)} / time.

| run | best records/s | median records/s | all rounds |
|---|---:|---:|---|
| no-op consumer, from start | ${fmt(best(noopAll))} | ${fmt(med(noopAll))} | ${list(noopAll)} |
| no-op consumer, steady (from its first record) | ${fmt(best(noopSteady))} | ${fmt(med(noopSteady))} | ${list(noopSteady)} |
| decode-only consumer, from start | ${fmt(best(decAll))} | ${fmt(med(decAll))} | ${list(decAll)} |
| decode-only consumer, steady (from its first record) | ${fmt(best(decSteady))} | ${fmt(med(decSteady))} | ${list(decSteady)} |
| service, input from start (stage 1 read all) | ${fmt(best(inAll))} | ${fmt(med(inAll))} | ${list(inAll)} |
| service, input steady (from its first record) | ${fmt(best(inSteady))} | ${fmt(med(inSteady))} | ${list(inSteady)} |
| service, end to end from start (settled) | ${fmt(best(e2e))} | ${fmt(med(e2e))} | ${list(e2e)} |

| ratio (best / median) | ratio | ≥ 0.70 (median)? |
|---|---:|---|
| service input / no-op, from start | ${ratio(inAll, noopAll)} | ${pass(inAll, noopAll)} |
| service input / no-op, steady | ${ratio(inSteady, noopSteady)} | ${pass(inSteady, noopSteady)} |
| **service end to end / no-op, from start** | **${ratio(e2e, noopAll)}** | **${pass(e2e, noopAll)}** |
| decode-only / no-op, from start (the ceiling) | ${ratio(decAll, noopAll)} | — |
| decode-only / no-op, steady (the ceiling) | ${ratio(decSteady, noopSteady)} | — |
| service input / decode-only, steady | ${ratio(inSteady, decSteady)} | — |
| service end to end / decode-only, from start | ${ratio(e2e, decAll)} | — |

"decode-only / no-op" is the ceiling: the most that any consumer which must decode these Avro records, whatever it does with them, reaches against the no-op consumer on this machine. "… / decode-only" is the share of that ceiling the service reaches: 1.00 would mean its stages cost nothing beyond decoding.

Service phases per round (s from the start): ${phases}. The end-to-end time includes the 2 s of \`idle_partition_ms\`/\`idle_flush_ms\` after the last record (the last windows close on the wall-clock idle timer, checked once a second) and the settle polling. In round 1 stage 1 decoded ${fmt(s0.stats.decoded)} records (${fmt(s0.stats.deadLettered)} dead-lettered, ${fmt(s0.stats.late)} late) and handed ${fmt(s0.stats.partials)} entity pane partials to the repartition topic (${(s0.stats.partials / n).toFixed(2)} per input record; in ${fmt(s0.stats.bundles)} messages: per pane, input partition and repartition partition, one Avro bundle of the entities' pane aggregates and their sketches, docs/scaling.md §4); stage 2 closed ${fmt(s0.stats.windowsClosed)} windows (summed over its partitions) and scored ${fmt(s0.stats.verdicts)} verdicts (${fmt(s0.stats.anomalous)} anomalous); the three stages committed ${fmt(s0.stats.transactions)} transactions. ClickHouse after each round (window_aggregates / verdicts, \`count() … FINAL\`): ${outs}.

### Scale-out: one process against two in one consumer group

\`node dist/cli/main.js run --config <file>\` as child processes, each with its own \`metrics.port\`; two processes share one group id (so all three stages' groups), one database and one set of topics. Clock: from spawning the first child until done as seen from outside, polled every 250 ms: every child answers \`/readyz\` with 200 and its \`/metrics\` show \`burstwatch_consumer_lag_messages\` 0 for every stage and partition it has fetched since its last rebalance, \`burstwatch_open_panes\` 0 and \`burstwatch_stage_busy_seconds\` 0 (no batch in hand); stage 1's group has committed the input topic's high watermark on every partition (\`admin.fetchOffsets\`); and the row counts of window_aggregates, verdicts and rule_events (without FINAL) have not changed for 3 s. The time is that of the first sample of this final state. Node's start-up, ClickHouse DDL, topic creation and group joins (and, with two, the rebalance when the second joins) are inside the clock. Rounds: ${r.scaleRounds}${r.scaleRounds > 1 ? ', the order alternating (1 then 2, then 2 then 1)' : ' (1 process, then 2)'}.

| processes | best records/s to done | median records/s to done | s to done, each round | s until \`burstwatch_messages_total\` summed to ${fmt(n)}, each round |
|---|---:|---:|---|---|
| 1 | ${fmt(best(oneRates))} | ${fmt(med(oneRates))} | ${one.map((x) => sec(x.w.doneMs)).join(', ')} | ${one.map((x) => sec(x.w.allMs)).join(', ')} |
| 2 | ${fmt(best(twoRates))} | ${fmt(med(twoRates))} | ${two.map((x) => sec(x.w.doneMs)).join(', ')} | ${two.map((x) => sec(x.w.allMs)).join(', ')} |

**2 processes / 1 process throughput: ${(best(twoRates) / best(oneRates)).toFixed(2)} (best), ${(med(twoRates) / med(oneRates)).toFixed(2)} (median).** With two, \`burstwatch_messages_total\` summed to ${two.map((x) => fmt(x.w.messages)).join(', ')} by the end: records re-read from the committed point by the member that took a partition over at the rebalance. This machine has ${cpus().length} cores, shared by the two processes, the Kafka broker, ClickHouse and the bench itself (which only polls), so a second process can add little: the ratio shows what sharing the work costs (rebalance, a second set of transactional producers, twice the per-process fixed work) rather than what a second machine would add.

Outputs (\`count() … FINAL\`; all runs read the same topic):

| run | window_aggregates | verdicts | anomalous | rule_events |
|---|---:|---:|---:|---:|
${r.scale.map((x, i) => outRow(`${x.procs} process${x.procs > 1 ? 'es' : ''}, round ${Math.floor(i / 2) + 1}`, x.out)).join('\n')}
${r.svcOut.map((o, i) => outRow(`in-process service (throughput), round ${i + 1}`, o)).join('\n')}
${outRow('killed at half and restarted (below)', rec.out)}

${[...r.scale.map((x) => x.out), ...r.svcOut, rec.out].every(agree) ? 'Every run wrote the same number of window aggregates and verdicts.' : '**The runs do not agree on window aggregates or verdicts** (see the table).'}

### Recovery after SIGKILL

One child on a new group was killed with SIGKILL once its \`burstwatch_messages_total\` (scraped every 100 ms) reached half the input: after ${sec(rec.killedAfterMs)} s, with ${fmt(rec.atKill)} records read and ${fmt(rec.durable)} input offsets committed by stage 1 (${rec.rowsAtKill === null ? 'no window aggregate had reached ClickHouse yet: stage 2 runs well behind stage 1' : `rows in ClickHouse then, aggregates/verdicts/rule events without FINAL: ${rec.rowsAtKill}`}). A new child was started at once with the same config (same group, topics, database and port).

| | s |
|---|---:|
| (a) restart → \`/readyz\` answers 200 (all three stages in their groups; polled every 50 ms) | ${sec(rec.readyMs)} |
| (b) restart → done (the outside criterion above) | ${sec(rec.recovered.doneMs)} |
| (c) uninterrupted one-process runs: half read → done (median of ${secondHalf.length}: ${secondHalf.map(sec).join(', ')}) | ${sec(med(secondHalf))} |

**Restart cost: (b) / (c) = ${restartCost.toFixed(2)}** (1.00 would mean the restart cost nothing beyond reading the second half). (b) includes Node's start-up, the group joins, which wait for the killed members' sessions to time out (the stages use kafkajs' default session timeout, 30 s, which (a) matches), the restore of stage-2 state from the changelog and rules from their changelog, and re-reading input from stage 1's committed point (the oldest open pane) onwards; the new process read ${fmt(rec.recovered.messages)} records, ${fmt(rec.atKill - rec.durable)} of them already read by the killed one but not committed. Verdicts after the restart: ${fmt(rec.out.verdicts)} (\`count() FROM verdicts FINAL\`) against ${fmt(ref.verdicts)} in the first uninterrupted one-process run: ${lost === 0 && rec.out.verdicts === ref.verdicts ? '**none lost**' : lost > 0 ? `**${fmt(lost)} lost**` : `**${fmt(rec.out.verdicts - ref.verdicts)} more**`}; window aggregates ${fmt(rec.out.aggregates)} against ${fmt(ref.aggregates)}.

Each child was stopped with SIGTERM at the end of its run (\`burstwatch run\` gives itself 10 s, the bench SIGKILLs after 20 s): ${stopSummary(r.stopped)}.

Children's logs (all child runs above): ${logs.error} error and ${logs.warn} warn lines${logs.messages.length ? `: ${logs.messages.slice(0, 8).map((m) => `\`${m.replace(/`/g, "'")}\``).join('; ')}${logs.messages.length > 8 ? `; and ${logs.messages.length - 8} more kinds` : ''}` : ''}. Load average (1/5/15 min) at the start ${r.load0.map((x) => x.toFixed(2)).join('/')}, at the end ${r.load1.map((x) => x.toFixed(2)).join('/')}.
`;
}
