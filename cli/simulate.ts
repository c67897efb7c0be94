import { readFile, writeFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import cliProgress from 'cli-progress';
import { Command, InvalidArgumentError, Option } from 'commander';
import { Partitioners, type Message } from 'kafkajs';
import type { z } from 'zod';
import { createKafka, kafkaConfigSchema } from '../consumers/kafka-client.js';
import { BurstwatchError, ConfigError, SinkError, errorMessage } from '../errors.js';
import { logger } from '../logger.js';
import { encodeConfluent, encodePlain, encodeSingleObject } from '../schemas/codec.js';
import { fingerprintBytes } from '../schemas/fingerprint.js';
import { requestLogType, type RequestLog } from '../schemas/index.js';
import { SchemaRegistryClient } from '../schemas/registry.js';
import { writeAvroFile } from './avro-file.js';
import {
  DEFAULT_SCENARIOS,
  SCENARIO_NAMES,
  SCENARIOS,
  generateTraffic,
  scenarioLabels,
  type LabelledBurst,
  type ScenarioKind,
  type ScenarioName,
  type TrafficOptions,
} from './traffic.js';

/** How `simulate` frames each Kafka message: one of the three wire encodings, or all three in turn. */
export type SimulateEncoding = 'plain' | 'single_object' | 'confluent' | 'mixed';
/** Accepted values of `--encoding`. */
export const SIMULATE_ENCODINGS: readonly SimulateEncoding[] = ['plain', 'single_object', 'confluent', 'mixed'];

/** Progress of a simulation, reported every 5 000 events and once at the end. */
export interface SimulationProgress {
  /** Events written so far. */
  events: number;
  /** Event time of the latest event, epoch ms. */
  eventTimeMs: number;
  /** Share of the run's event time covered, 0..1. */
  fraction: number;
}

/** Options shared by both destinations. */
export interface SimulationOptions extends TrafficOptions {
  /** Where to write the ground-truth labels (JSON); none when absent. */
  labelsPath?: string;
  /** Called every 5 000 events and at the end. */
  onProgress?: (p: SimulationProgress) => void;
  /** Stops generating early; what was generated is still flushed, and the summary says `aborted`. */
  signal?: AbortSignal;
}

/** Options of {@link simulateToFile}. */
export interface FileSimulationOptions extends SimulationOptions {
  /** Path of the Avro object container file to write. */
  out: string;
  /** Block compression. Default `deflate`. */
  codec?: 'null' | 'deflate' | 'snappy';
}

/** Options of {@link simulateToKafka}. */
export interface KafkaSimulationOptions extends SimulationOptions {
  /** Topic to produce to; created with `partitions` partitions when missing. */
  topic: string;
  /** Bootstrap brokers. Default `127.0.0.1:19092`. */
  brokers?: string[];
  /** Further connection settings (TLS, SASL, client id), as in the service's `kafka` config section. */
  kafka?: z.input<typeof kafkaConfigSchema>;
  /** Message framing. Default `single_object`. */
  encoding?: SimulateEncoding;
  /** Schema registry base URL; required for `confluent` and `mixed`. */
  schemaRegistryUrl?: string;
  /** Partitions of the topic when this call creates it. Default 3. */
  partitions?: number;
  /** Messages per `sendBatch`. Default 2000. */
  batchSize?: number;
}

/** A burst of the run with the number of requests it produced (null for benign surges and drift, which are labelled null). */
export type BurstCount = LabelledBurst & { requests: number | null };

/** What a simulation wrote. */
export interface SimulationSummary {
  /** The file path, or `kafka://<brokers>/<topic>`. */
  destination: string;
  events: number;
  benignEvents: number;
  /** Events per attack scenario (every selected attack appears, possibly with 0). */
  attackEvents: Record<string, number>;
  bursts: BurstCount[];
  seed: number;
  /** Event-time range of the run, epoch ms (end exclusive). */
  startMs: number;
  endMs: number;
  baseRps: number;
  jitterMs: number;
  /** Wall-clock time taken, ms. */
  elapsedMs: number;
  eventsPerSecond: number;
  labelsPath: string | null;
  /** True when the signal stopped the run early. */
  aborted: boolean;
}

const PROGRESS_EVERY = 5_000;
const DEFAULT_JITTER_MS = 2000;

/** Counts labels and reports progress while passing records through. */
class Tally {
  events = 0;
  readonly attacks: Record<string, number> = {};
  aborted = false;
  private readonly t0 = performance.now();

  constructor(private readonly opts: SimulationOptions) {
    for (const b of scenarioLabels(opts)) if (b.kind === 'attack') this.attacks[b.name] = 0;
  }

  *records(): Generator<RequestLog> {
    const { onProgress, signal, startMs, durationMs } = this.opts;
    let lastTs = startMs;
    for (const { log, label } of generateTraffic(this.opts)) {
      if (signal?.aborted) {
        this.aborted = true;
        break;
      }
      this.events++;
      if (label !== null) this.attacks[label] = (this.attacks[label] ?? 0) + 1;
      if (log.timestamp > lastTs) lastTs = log.timestamp;
      if (onProgress && this.events % PROGRESS_EVERY === 0) {
        onProgress({ events: this.events, eventTimeMs: lastTs, fraction: Math.min(1, (lastTs - startMs) / durationMs) });
      }
      yield log;
    }
    onProgress?.({ events: this.events, eventTimeMs: lastTs, fraction: this.aborted ? (lastTs - startMs) / durationMs : 1 });
  }

  async finish(destination: string): Promise<SimulationSummary> {
    const o = this.opts;
    const elapsedMs = performance.now() - this.t0;
    const attackTotal = Object.values(this.attacks).reduce((a, b) => a + b, 0);
    const summary: SimulationSummary = {
      destination,
      events: this.events,
      benignEvents: this.events - attackTotal,
      attackEvents: this.attacks,
      bursts: scenarioLabels(o).map((b) => ({ ...b, requests: b.kind === 'attack' ? (this.attacks[b.name] ?? 0) : null })),
      seed: o.seed,
      startMs: o.startMs,
      endMs: o.startMs + o.durationMs,
      baseRps: o.baseRps,
      jitterMs: o.jitterMs ?? DEFAULT_JITTER_MS,
      elapsedMs: Math.round(elapsedMs),
      eventsPerSecond: elapsedMs > 0 ? Math.round((this.events / elapsedMs) * 1000) : 0,
      labelsPath: o.labelsPath ?? null,
      aborted: this.aborted,
    };
    if (o.labelsPath) await writeFile(o.labelsPath, JSON.stringify(labelsDocument(summary), null, 2) + '\n');
    return summary;
  }
}

/**
 * Writes a simulated run to an Avro object container file (and its labels, if asked), and
 * returns what it wrote. The file replays with `burstwatch replay --input <file>`.
 */
export async function simulateToFile(opts: FileSimulationOptions): Promise<SimulationSummary> {
  const tally = new Tally(opts);
  await writeAvroFile(opts.out, tally.records(), { codec: opts.codec ?? 'deflate' });
  return tally.finish(opts.out);
}

/**
 * Produces a simulated run to a Kafka topic, creating the topic if it is missing. Messages
 * are keyed by client IP (so one network's requests spread over partitions, as they do
 * from real edge fleets) and sent by an idempotent producer in batches; awaiting each batch
 * is the back-pressure. Kafka message timestamps are left to the producer (wall clock):
 * event time is in the record, and old event times would fall outside topic retention.
 */
export async function simulateToKafka(opts: KafkaSimulationOptions): Promise<SimulationSummary> {
  const encoding = opts.encoding ?? 'single_object';
  if (!SIMULATE_ENCODINGS.includes(encoding)) {
    throw new ConfigError('encoding', `'${String(encoding)}' is not one of ${SIMULATE_ENCODINGS.join(', ')}`);
  }
  const needsRegistry = encoding === 'confluent' || encoding === 'mixed';
  if (needsRegistry && !opts.schemaRegistryUrl) {
    throw new ConfigError('schema_registry', `encoding '${encoding}' needs a schema registry URL (--schema-registry)`);
  }
  const partitions = opts.partitions ?? 3;
  if (!Number.isInteger(partitions) || partitions < 1) throw new ConfigError('partitions', `must be an integer ≥ 1, got ${partitions}`);
  const batchSize = opts.batchSize ?? 2000;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new ConfigError('batch_size', `must be an integer ≥ 1, got ${batchSize}`);
  if (!opts.topic) throw new ConfigError('topic', 'must be a non-empty topic name');

  const settings = kafkaConfigSchema.parse({
    client_id: 'burstwatch-simulate',
    ...opts.kafka,
    ...(opts.brokers ? { brokers: opts.brokers } : {}),
  });
  const destination = `kafka://${settings.brokers.join(',')}/${opts.topic}`;
  const kafka = createKafka(settings);
  const failed = (what: string, err: unknown): SinkError =>
    new SinkError(`${destination}: ${what}: ${errorMessage(err)}`, {
      retriable: err instanceof BurstwatchError ? err.retriable : (err as { retriable?: boolean }).retriable === true,
      cause: err,
    });

  // Registry first: it is the cheaper call to fail.
  let schemaId = 0;
  if (needsRegistry) {
    const registry = new SchemaRegistryClient({ url: opts.schemaRegistryUrl! });
    schemaId = await registry.register(`${opts.topic}-value`, requestLogType);
    logger.info({ subject: `${opts.topic}-value`, schemaId }, 'registered request-log schema');
  }

  const admin = kafka.admin();
  try {
    await admin.connect();
    const created = await admin.createTopics({ topics: [{ topic: opts.topic, numPartitions: partitions }], waitForLeaders: true });
    logger.info({ topic: opts.topic, partitions, created }, created ? 'created topic' : 'topic exists');
  } catch (err) {
    throw failed('cannot create topic', err);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }

  const fingerprint = fingerprintBytes(requestLogType);
  const framings: ((log: RequestLog) => Buffer)[] = [
    (log) => encodeConfluent(schemaId, requestLogType, log),
    (log) => encodeSingleObject(requestLogType, log, fingerprint),
    (log) => encodePlain(requestLogType, log),
  ];
  const only = encoding === 'confluent' ? 0 : encoding === 'single_object' ? 1 : 2;

  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  const tally = new Tally(opts);
  try {
    await producer.connect();
    let batch: Message[] = [];
    let i = 0;
    const send = async (): Promise<void> => {
      await producer.sendBatch({ topicMessages: [{ topic: opts.topic, messages: batch }], acks: -1 });
      batch = [];
    };
    for (const log of tally.records()) {
      const frame = framings[encoding === 'mixed' ? i++ % 3 : only]!;
      batch.push({ key: log.client_ip, value: frame(log) });
      if (batch.length >= batchSize) await send();
    }
    if (batch.length > 0) await send();
  } catch (err) {
    throw err instanceof BurstwatchError ? err : failed('cannot produce', err);
  } finally {
    await producer.disconnect().catch(() => undefined);
  }
  return tally.finish(destination);
}

// ---------------------------------------------------------------------------------------
// Labels file

/** The labels file as written (snake_case keys, as everything on the wire). */
export interface LabelsDocument {
  generator: 'burstwatch simulate';
  seed: number;
  start_ms: number;
  end_ms: number;
  base_rps: number;
  jitter_ms: number;
  events: number;
  attack_events: Record<string, number>;
  bursts: {
    name: ScenarioName;
    kind: ScenarioKind;
    start_ms: number;
    end_ms: number;
    match: { asn?: number; ja4?: string };
    requests: number | null;
    description: string;
  }[];
}

/** The JSON document of a run's ground truth. */
export function labelsDocument(s: SimulationSummary): LabelsDocument {
  return {
    generator: 'burstwatch simulate',
    seed: s.seed,
    start_ms: s.startMs,
    end_ms: s.endMs,
    base_rps: s.baseRps,
    jitter_ms: s.jitterMs,
    events: s.events,
    attack_events: s.attackEvents,
    bursts: s.bursts.map((b) => ({
      name: b.name,
      kind: b.kind,
      start_ms: b.startMs,
      end_ms: b.endMs,
      match: b.match,
      requests: b.requests,
      description: b.description,
    })),
  };
}

/** Reads a labels file back into bursts (camelCase), e.g. to score a replay against the truth. */
export async function readLabelsFile(path: string): Promise<BurstCount[]> {
  const doc = JSON.parse(await readFile(path, 'utf8')) as LabelsDocument;
  if (doc.generator !== 'burstwatch simulate' || !Array.isArray(doc.bursts)) {
    throw new ConfigError('labels', `${path} is not a labels file written by burstwatch simulate`);
  }
  return doc.bursts.map((b) => ({
    name: b.name,
    kind: b.kind,
    startMs: b.start_ms,
    endMs: b.end_ms,
    match: b.match,
    description: b.description,
    requests: b.requests,
  }));
}

// ---------------------------------------------------------------------------------------
// Command line

/** Parses `10m`, `90s`, `1h`, `1500ms` (also `1.5m`) into ms. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`'${text}' is not a duration; use a number with ms, s, m or h (e.g. 10m, 90s)`);
  const ms = Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  if (!(ms > 0)) throw new InvalidArgumentError(`duration '${text}' must be greater than zero`);
  return Math.round(ms);
}

/**
 * Resolves `--start`: an ISO-8601 time, epoch milliseconds, or `now`. Without one, the run
 * ends now: start = now − duration, rounded down to the minute.
 */
export function parseStart(text: string | undefined, durationMs: number, nowMs: number = Date.now()): number {
  if (text === undefined) return Math.floor((nowMs - durationMs) / 60_000) * 60_000;
  const t = text.trim();
  if (t === 'now') return nowMs;
  if (/^\d+$/.test(t)) return Number(t);
  const parsed = Date.parse(t);
  if (Number.isNaN(parsed)) throw new ConfigError('start', `'${text}' is not an ISO-8601 time, epoch ms or 'now'`);
  return parsed;
}

/** Parses `--scenario` values (space- or comma-separated); `none` selects no scenario. */
export function parseScenarios(values: readonly string[] | undefined): ScenarioName[] {
  if (values === undefined) return [...DEFAULT_SCENARIOS];
  const names = values.flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
  if (names.length === 1 && names[0] === 'none') return [];
  const out: ScenarioName[] = [];
  for (const n of names) {
    if (!(SCENARIO_NAMES as readonly string[]).includes(n)) {
      throw new ConfigError('scenario', `unknown scenario '${n}'; accepted: ${SCENARIO_NAMES.join(', ')}, or none`);
    }
    if (!out.includes(n as ScenarioName)) out.push(n as ScenarioName);
  }
  return out;
}

function intArg(name: string, min: number) {
  return (v: string): number => {
    if (!/^-?\d+$/.test(v.trim()) || Number(v) < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}`);
    return Number(v);
  };
}

function rateArg(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError('rate must be a number of requests per second ≥ 0');
  return n;
}

interface CliOptions {
  out?: string;
  topic?: string;
  brokers: string;
  encoding: SimulateEncoding;
  schemaRegistry?: string;
  partitions: number;
  batchSize: number;
  seed: number;
  start?: string;
  duration: number;
  rate: number;
  jitter: number;
  scenario?: string[];
  labels?: string;
  codec: 'null' | 'deflate' | 'snappy';
}

/** Progress on stderr: a bar on a terminal, otherwise a log line every 10% of the run. */
function progressReporter(): { onProgress: (p: SimulationProgress) => void; stop: () => void } {
  const t0 = performance.now();
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        stream: process.stderr,
        format: 'simulate |{bar}| {percentage}% | {events} events | {rate} ev/s | ETA {eta_formatted}',
        hideCursor: true,
        clearOnComplete: false,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(1000, 0, { events: 0, rate: 0 });
    return {
      onProgress: (p) => {
        const s = (performance.now() - t0) / 1000;
        bar.update(Math.round(p.fraction * 1000), { events: p.events, rate: s > 0 ? Math.round(p.events / s) : 0 });
      },
      stop: () => bar.stop(),
    };
  }
  let nextStep = 0.1;
  return {
    onProgress: (p) => {
      if (p.fraction + 1e-9 < nextStep) return;
      nextStep = Math.floor(p.fraction * 10 + 1e-9) / 10 + 0.1;
      logger.info({ events: p.events, event_time: new Date(p.eventTimeMs).toISOString(), percent: Math.round(p.fraction * 100) }, 'simulate progress');
    },
    stop: () => undefined,
  };
}

/** The summary printed on stdout (snake_case JSON). */
export function summaryJson(s: SimulationSummary): Record<string, unknown> {
  return {
    destination: s.destination,
    events: s.events,
    benign_events: s.benignEvents,
    attack_events: s.attackEvents,
    bursts: s.bursts.map((b) => ({ name: b.name, kind: b.kind, start_ms: b.startMs, end_ms: b.endMs, match: b.match, requests: b.requests })),
    start: new Date(s.startMs).toISOString(),
    end: new Date(s.endMs).toISOString(),
    seed: s.seed,
    base_rps: s.baseRps,
    elapsed_ms: s.elapsedMs,
    events_per_second: s.eventsPerSecond,
    labels: s.labelsPath,
    aborted: s.aborted,
  };
}

/**
 * `burstwatch simulate`: synthetic CDN traffic with labelled bot bursts, to an Avro file or
 * a Kafka topic. Writes nothing to stdout but the final summary (JSON).
 */
export function simulateCommand(): Command {
  const kafkaOnly = ['out'];
  return new Command('simulate')
    .description('Generate realistic web traffic with labelled bot bursts into an Avro file or a Kafka topic')
    .addOption(new Option('--out <file.avro>', 'write an Avro object container file').conflicts('topic'))
    .addOption(new Option('--topic <name>', 'produce to this Kafka topic (created if missing)'))
    .addOption(new Option('--brokers <list>', 'Kafka bootstrap brokers, comma-separated').default('127.0.0.1:19092').conflicts(kafkaOnly))
    .addOption(
      new Option('--encoding <encoding>', 'Kafka message framing; mixed rotates through the three')
        .choices(SIMULATE_ENCODINGS)
        .default('single_object')
        .conflicts(kafkaOnly),
    )
    .addOption(new Option('--schema-registry <url>', 'schema registry URL (confluent and mixed encodings)').conflicts(kafkaOnly))
    .addOption(
      new Option('--partitions <n>', 'partitions when creating the topic').argParser(intArg('partitions', 1)).default(3).conflicts(kafkaOnly),
    )
    .addOption(
      new Option('--batch-size <n>', 'messages per Kafka batch').argParser(intArg('batch-size', 1)).default(2000).conflicts(kafkaOnly),
    )
    .addOption(new Option('--seed <n>', 'random seed').argParser(intArg('seed', Number.MIN_SAFE_INTEGER)).default(42))
    .addOption(new Option('--start <time>', 'event time of the first request: ISO-8601, epoch ms or now (default: now minus duration, to the minute)'))
    .addOption(new Option('--duration <d>', 'length of the run in event time, e.g. 10m, 90s').argParser(parseDuration).default(600_000, '10m'))
    .addOption(new Option('--rate <rps>', 'benign requests per second').argParser(rateArg).default(300))
    .addOption(
      new Option('--jitter <ms>', 'largest out-of-orderness of event time, ms').argParser(intArg('jitter', 0)).default(DEFAULT_JITTER_MS),
    )
    .addOption(
      new Option('--scenario <names...>', `scenarios to inject: ${SCENARIO_NAMES.join(', ')}, or none`).default(undefined, DEFAULT_SCENARIOS.join(' ')),
    )
    .addOption(new Option('--labels <file.json>', 'write the ground truth here (default for files: <out>.labels.json)'))
    .addOption(new Option('--codec <codec>', 'Avro block compression (files)').choices(['null', 'deflate', 'snappy']).default('deflate').conflicts('topic'))
    .addHelpText(
      'after',
      `\nScenarios:\n${SCENARIO_NAMES.map((n) => `  ${n.padEnd(20)} ${SCENARIOS[n].description}`).join('\n')}\n`,
    )
    .action(async function (this: Command, o: CliOptions) {
      if (!o.out && !o.topic) this.error('error: one of --out <file.avro> or --topic <name> is required', { exitCode: 2 });
      let base: SimulationOptions;
      try {
        const scenarios = parseScenarios(o.scenario);
        base = {
          seed: o.seed,
          startMs: parseStart(o.start, o.duration),
          durationMs: o.duration,
          baseRps: o.rate,
          jitterMs: o.jitter,
          scenarios,
        };
        const labels = o.labels ?? (o.out ? `${o.out}.labels.json` : undefined);
        if (labels) base.labelsPath = labels;
      } catch (err) {
        if (err instanceof ConfigError) this.error(`error: ${err.message}`, { exitCode: 2 });
        throw err;
      }
      const progress = progressReporter();
      const ac = new AbortController();
      const onSigint = (): void => ac.abort();
      process.once('SIGINT', onSigint);
      base.onProgress = progress.onProgress;
      base.signal = ac.signal;
      let summary: SimulationSummary;
      try {
        summary = o.out
          ? await simulateToFile({ ...base, out: o.out, codec: o.codec })
          : await simulateToKafka({
              ...base,
              topic: o.topic!,
              brokers: o.brokers.split(',').map((b) => b.trim()).filter((b) => b !== ''),
              encoding: o.encoding,
              partitions: o.partitions,
              batchSize: o.batchSize,
              ...(o.schemaRegistry ? { schemaRegistryUrl: o.schemaRegistry } : {}),
            });
      } catch (err) {
        if (err instanceof ConfigError) this.error(`error: ${err.message}`, { exitCode: 2 });
        throw err;
      } finally {
        progress.stop();
        process.off('SIGINT', onSigint);
      }
      logger.info(
        { events: summary.events, attack_events: summary.attackEvents, elapsed_ms: summary.elapsedMs, events_per_second: summary.eventsPerSecond },
        'simulation written',
      );
      process.stdout.write(JSON.stringify(summaryJson(summary), null, 2) + '\n');
    });
}
