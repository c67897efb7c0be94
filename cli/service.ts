import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Config } from '../config.js';
import { DeadLetterSink } from '../consumers/dead-letter.js';
import { createKafka } from '../consumers/kafka-client.js';
import { KafkaSource } from '../consumers/kafka-source.js';
import { logger } from '../logger.js';
import { createMetrics, serveMetrics } from '../metrics.js';
import { Pipeline } from '../pipeline.js';
import { RequestLogDecoder, type WireEncoding } from '../schemas/codec.js';
import { loadSchema } from '../schemas/index.js';
import { SchemaRegistryClient } from '../schemas/registry.js';
import { ClickHouseSink } from '../sinks/clickhouse.js';
import { EdgeRuleSink } from '../sinks/edge-rules.js';
import avro from 'avsc';

/** A running live service. */
export interface Service {
  pipeline: Pipeline;
  source: KafkaSource;
  clickhouse: ClickHouseSink;
  edgeRules: EdgeRuleSink;
  deadLetter: DeadLetterSink;
  /** Stops fetching, finishes the batch in hand, flushes, commits and disconnects. */
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
 * Starts the live service: Kafka in; ClickHouse, the edge-rule topic and the dead-letter topic
 * out; metrics on `metrics.port`. Everything is connected (tables and topics created) before
 * the first record is read.
 */
export async function startService(config: Config): Promise<Service> {
  loadSchema('request-log.avsc'); // fail early if the package is incomplete
  const kafka = createKafka(config.kafka);
  const clickhouse = new ClickHouseSink(config.clickhouse);
  const edgeRules = new EdgeRuleSink(kafka, config.edge_rules);
  const deadLetter = new DeadLetterSink(kafka, config.dead_letter);
  // Late records go to their own topic (same retention and layout as the dead letters) when configured.
  const late = config.windows.late_topic ? new DeadLetterSink(kafka, { ...config.dead_letter, topic: config.windows.late_topic }) : null;
  const pipeline = new Pipeline(config, [clickhouse, edgeRules]);
  await pipeline.connect();
  await deadLetter.connect();
  await late?.connect();
  const source = new KafkaSource(kafka, config, createDecoder(config), deadLetter, pipeline, Date.now, late);
  let server: Server | null = null;
  if (config.metrics.port > 0) {
    const registry = createMetrics({ source, pipeline, deadLetter, clickhouse, edgeRules });
    server = await serveMetrics(registry, config.metrics.host, config.metrics.port, () => source.ready);
    logger.info({ url: `http://${config.metrics.host}:${config.metrics.port}/metrics` }, 'metrics served');
  }
  await source.start();
  let stopping: Promise<void> | null = null;
  return {
    pipeline,
    source,
    clickhouse,
    edgeRules,
    deadLetter,
    stop: () => {
      stopping ??= (async () => {
        await source.stop();
        await pipeline.close();
        await deadLetter.close();
        await late?.close();
        await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
      })();
      return stopping;
    },
  };
}
