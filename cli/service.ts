import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Config } from '../config.js';
import { DeadLetterSink } from '../consumers/dead-letter.js';
import { createKafka } from '../consumers/kafka-client.js';
import { PaneTask, paneStageStats, type PaneStageStats } from '../consumers/pane-stage.js';
import { ensureInternalTopics, internalTopics, stageGroups } from '../consumers/topology.js';
import { TransactionalStage } from '../consumers/transactional-stage.js';
import { WindowTask, windowStageStats, type WindowStageContext, type WindowStageStats } from '../consumers/window-stage.js';
import { RuleTask, ruleStageStats, type RuleStageStats } from '../rules/rule-stage.js';
import type { Kafka } from 'kafkajs';
import { BurstwatchError, errorMessage } from '../errors.js';
import { logger } from '../logger.js';
import { AllowlistFile } from '../rules/allowlist.js';
import { createMetrics, serveMetrics } from '../metrics.js';
import { packageVersion } from '../pipeline.js';
import { RequestLogDecoder, type WireEncoding } from '../schemas/codec.js';
import { loadSchema } from '../schemas/index.js';
import { SchemaRegistryClient } from '../schemas/registry.js';
import { ClickHouseSink } from '../sinks/clickhouse.js';
import { EdgeRuleSink } from '../sinks/edge-rules.js';
import avro from 'avsc';

/** A running live service: the three stages of docs/scaling.md §4 in one process. */
export interface Service {
  config: Config;
  /** Stage 1: input partitions → panes → repartition topic. */
  panes: TransactionalStage;
  /** Stage 2: repartition partitions → windows → scores → ClickHouse, verdicts to the rules stage. */
  windows: TransactionalStage;
  /** Rules stage: window verdicts → rules → edge-rule topic and ClickHouse. */
  rules: TransactionalStage;
  stats: { panes: PaneStageStats; windows: WindowStageStats; rules: RuleStageStats };
  clickhouse: ClickHouseSink;
  edgeRules: EdgeRuleSink;
  deadLetter: DeadLetterSink;
  /** Stage-1 and stage-2 tasks now live in this process. */
  paneTasks(): PaneTask[];
  windowTasks(): WindowTask[];
  ruleTask(): RuleTask | null;
  /**
   * Whether everything has gone all the way through this process: every stage has consumed
   * its partitions to their high watermarks, no pane is open, no window waits. With
   * `inputMessages`, also that stage 1 has read that many input messages.
   */
  settled(inputMessages?: number): Promise<boolean>;
  /** An error that stopped a stage for good, if any. */
  fatal(): unknown;
  /** Stops fetching, finishes the batches in hand, flushes, commits and disconnects. */
  stop(): Promise<void>;
}

function readSchemaFile(path: string): avro.Type {
  return avro.Type.forSchema(JSON.parse(readFileSync(path, 'utf8')) as avro.Schema);
}

/** Builds the decoder the configuration asks for. */
export function createDecoder(config: Config): RequestLogDecoder {
  const input = config.input;
  const registry = input.schema_registry
    ? new SchemaRegistryClient({
        url: input.schema_registry.url,
        timeoutMs: input.schema_registry.timeout_ms,
        ...(input.schema_registry.basic_auth_file ? { basicAuth: readFileSync(input.schema_registry.basic_auth_file, 'utf8').trim() } : {}),
      })
    : undefined;
  return new RequestLogDecoder({
    encodings: input.encodings as WireEncoding[],
    knownWriters: input.known_writer_schemas.map(readSchemaFile),
    ...(input.plain_writer_schema ? { plainWriter: readSchemaFile(input.plain_writer_schema) } : {}),
    ...(registry ? { registry } : {}),
  });
}

/**
 * Starts the live service: three consumer-group stages joined by internal topics
 * (docs/scaling.md §4), ClickHouse and the edge-rule and dead-letter topics out, metrics on
 * `metrics.port`. Every topic and table is created before the first record is read. Any
 * number of processes may run this with the same config: the groups share the partitions.
 * `hooks.onWindow` sees each window stage 2 closes, with its verdicts (benches, tests). Default none.
 */
export async function startService(config: Config, hooks: { onWindow?: WindowStageContext['onWindow'] } = {}): Promise<Service> {
  loadSchema('request-log.avsc'); // fail early if the package is incomplete
  const kafka = createKafka(config.kafka);
  const clickhouse = new ClickHouseSink(config.clickhouse);
  const edgeRules = new EdgeRuleSink(kafka, config.edge_rules);
  const deadLetter = new DeadLetterSink(kafka, config.dead_letter);
  // Late records go to their own topic (same retention and layout as the dead letters) when configured.
  const late = config.windows.late_topic ? new DeadLetterSink(kafka, { ...config.dead_letter, topic: config.windows.late_topic }) : null;
  await clickhouse.connect();
  await edgeRules.connect();
  await deadLetter.connect();
  await late?.connect();
  const t = internalTopics(config.topology, config.input.group_id);
  const repartitions = await ensureInternalTopics(kafka, config.topology, t);
  const groups = stageGroups(config.input.group_id);
  const version = packageVersion();
  const stats = { panes: paneStageStats(), windows: windowStageStats(), rules: ruleStageStats() };
  const inputPartitions = await partitionCount(kafka, config.input.topic);
  const paneCtx = { config, decoder: createDecoder(config), deadLetter, late, inputPartitions, repartitionTopic: t.repartition, repartitions, stats: stats.panes };
  const windowCtx = { kafka, config, sinks: [clickhouse], changelogTopic: t.changelog, verdictTopic: t.verdicts, pipelineVersion: version, stats: stats.windows, onWindow: hooks.onWindow };
  const ruleCtx = { kafka, config: config.rules, slideMs: config.windows.slide_ms, repartitions, changelogTopic: t.rulesChangelog, sinks: [edgeRules, clickhouse], stats: stats.rules };
  // rules.allow_file: read now (a bad line is a config error), then followed; changes reach the
  // live rules task and any task created later, without a restart.
  const allowFile = config.rules.allow_file
    ? new AllowlistFile(config.rules.allow_file, (entries) => {
        const allow = [...config.rules.allow, ...entries];
        ruleCtx.config = { ...ruleCtx.config, allow };
        ruleTask()?.rules.setAllowlist(allow);
      })
    : null;
  if (allowFile) ruleCtx.config = { ...ruleCtx.config, allow: [...config.rules.allow, ...allowFile.entries] };

  const panes = new TransactionalStage(kafka, {
    name: 'panes',
    groupId: groups.panes,
    topic: config.input.topic,
    sessionTimeoutMs: config.input.session_timeout_ms,
    transactionalIdPrefix: `${groups.panes}-panes`,
    maxBytesPerPartition: config.input.max_bytes_per_partition,
    fromBeginning: config.input.from_beginning,
    createTask: (p, committed) => Promise.resolve(new PaneTask(p, committed, paneCtx)),
    // Dead letters and late records travel in the stage's own transactions: nothing outside Kafka to make durable first.
    beforeCommit: () => Promise.resolve(),
  });
  const windows = new TransactionalStage(kafka, {
    name: 'windows',
    groupId: groups.windows,
    topic: t.repartition,
    sessionTimeoutMs: config.input.session_timeout_ms,
    transactionalIdPrefix: `${groups.windows}`,
    createTask: (r, committed) => WindowTask.create(r, committed, windowCtx),
    beforeCommit: () => clickhouse.flush(),
  });
  const rules = new TransactionalStage(kafka, {
    name: 'rules',
    groupId: groups.rules,
    topic: t.verdicts,
    sessionTimeoutMs: config.input.session_timeout_ms,
    transactionalIdPrefix: `${groups.rules}`,
    createTask: () => RuleTask.create(ruleCtx),
    beforeCommit: async () => {
      await edgeRules.flush();
      await clickhouse.flush();
    },
  });
  const paneTasks = (): PaneTask[] => [...panes.liveTasks.values()] as PaneTask[];
  const windowTasks = (): WindowTask[] => [...windows.liveTasks.values()] as WindowTask[];
  const ruleTask = (): RuleTask | null => (rules.liveTasks.get(0) as RuleTask | undefined) ?? null;
  let server: Server | null = null;
  const service: Service = {
    config,
    panes,
    windows,
    rules,
    stats,
    clickhouse,
    edgeRules,
    deadLetter,
    paneTasks,
    windowTasks,
    ruleTask,
    settled: async (inputMessages?: number) => {
      if (inputMessages !== undefined && stats.panes.messages < inputMessages) return false;
      if (paneTasks().some((task) => task.builder.openPanes > 0)) return false;
      if (windowTasks().some((task) => task.assembler.heldPanes + task.assembler.pendingPanes > 0)) return false;
      if ((ruleTask()?.pendingWindows ?? 0) > 0) return false;
      return (await panes.caughtUp()) && (await windows.caughtUp()) && (await rules.caughtUp());
    },
    fatal: () => panes.fatal ?? windows.fatal ?? rules.fatal,
    stop: () => stopping(),
  };
  let stopPromise: Promise<void> | null = null;
  const stopping = (): Promise<void> =>
    (stopPromise ??= (async () => {
      allowFile?.stop();
      // A batch waiting out a ClickHouse outage gives up now (its input is re-read after the
      // restart); requests still in flight are cancelled after 5 s, inside the 10 s grace.
      // The stages learn they are stopping first, so that such a batch is not taken for a failure.
      for (const stage of [panes, windows, rules]) stage.beginStop();
      clickhouse.stopRetrying(5_000);
      // In parallel: each stage finishes and commits its own batch in hand, and none needs
      // another's. One after the other, each consumer's stop could wait out a fetch in flight
      // (up to kafkajs' maxWaitTime, 5 s), and three of them overran the 10 s grace (seen in
      // the e2e bench: "graceful stop took too long").
      await Promise.all([panes.stop(), windows.stop(), rules.stop()]);
      await clickhouse.close();
      await edgeRules.close();
      await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    })());
  service.stop = stopping;
  allowFile?.start();
  if (config.metrics.port > 0) {
    const registry = createMetrics(service);
    server = await serveMetrics(registry, config.metrics.host, config.metrics.port, () => [
      ...[panes, windows, rules].filter((st) => !st.ready).map((st) => `stage ${st.name} has not joined its consumer group yet`),
      ...(clickhouse.healthy ? [] : ['clickhouse is failing; inserts are retried and consumption waits (see burstwatch_sink_healthy)']),
    ], () => {
      const err = service.fatal();
      return err ? errorMessage(err) : null;
    });
    logger.info({ url: `http://${config.metrics.host}:${config.metrics.port}/metrics` }, 'metrics served');
  }
  await rules.start();
  await windows.start();
  await panes.start();
  return service;
}

/**
 * Waits for the input topic to exist (a pipeline may create it after burstwatch starts) and
 * returns its partition count. A topic the service may not describe is an error that says so,
 * not a topic to wait for: without DESCRIBE (READ implies it) the broker hides it.
 */
async function partitionCount(kafka: Kafka, topic: string): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    let warned = false;
    while (!(await admin.listTopics()).includes(topic)) {
      if (!warned) {
        // Hidden or missing? Without DESCRIBE (READ implies it) the broker hides a topic.
        await admin.fetchTopicMetadata({ topics: [topic] }).catch((err: unknown) => {
          if ((err as { type?: string }).type === 'TOPIC_AUTHORIZATION_FAILED') {
            throw new BurstwatchError(`input topic ${topic}: not authorized to read it; grant READ on it to this service's principal (docs/security.md)`, { cause: err });
          }
        });
        logger.warn({ topic }, 'input topic does not exist yet; waiting for it to be created');
      }
      warned = true;
      await new Promise((r) => setTimeout(r, 2000));
    }
    const meta = await admin.fetchTopicMetadata({ topics: [topic] });
    return meta.topics[0]?.partitions.length ?? 1;
  } finally {
    await admin.disconnect();
  }
}
