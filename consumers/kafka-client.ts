import { readFileSync } from 'node:fs';
import { Kafka, logLevel, type Admin, type KafkaConfig, type Message, type Producer, type SASLOptions } from 'kafkajs';
import { z } from 'zod';
import { BurstwatchError, withRetry } from '../errors.js';
import { logger } from '../logger.js';

/** Kafka connection settings, shared by the consumer, the dead-letter and the edge-rule producers. */
export const kafkaConfigSchema = z
  .object({
    /** Bootstrap brokers, `host:port`. Default the local broker of `burstwatch infra`. */
    brokers: z.array(z.string().regex(/^[^\s:]+:\d+$/, { message: "brokers look like 'host:9092'" })).min(1).default(['127.0.0.1:19092']),
    /** Client id sent to the brokers. Default `burstwatch`. */
    client_id: z.string().min(1).default('burstwatch'),
    /** TLS: true for the system CAs, or files for a private CA / mutual TLS. */
    ssl: z
      .union([
        z.boolean(),
        z.object({ ca_file: z.string().optional(), cert_file: z.string().optional(), key_file: z.string().optional(), reject_unauthorized: z.boolean().default(true) }).strict(),
      ])
      .default(false),
    /** SASL; the password comes from `password` or, better, `password_file` or the BURSTWATCH_KAFKA_PASSWORD environment variable. */
    sasl: z
      .object({
        mechanism: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']),
        username: z.string(),
        password: z.string().optional(),
        password_file: z.string().optional(),
      })
      .strict()
      .optional(),
    /** Connection timeout, ms. Default 10 000. */
    connection_timeout_ms: z.number().int().positive().default(10_000),
  })
  .strict();

/** Validated Kafka settings. */
export type KafkaSettings = z.infer<typeof kafkaConfigSchema>;

const levelNames: Record<number, 'error' | 'warn' | 'info' | 'debug'> = {
  [logLevel.ERROR]: 'error',
  [logLevel.WARN]: 'warn',
  [logLevel.INFO]: 'info',
  [logLevel.DEBUG]: 'debug',
};

/** Builds a kafkajs client whose own logs go to pino as structured lines. */
export function createKafka(settings: KafkaSettings): Kafka {
  const config: KafkaConfig = {
    clientId: settings.client_id,
    brokers: settings.brokers,
    connectionTimeout: settings.connection_timeout_ms,
    logLevel: logLevel.WARN,
    logCreator: () => ({ namespace, level, log }) => {
      const { message, ...extra } = log;
      // kafkajs logs every error *response* at ERROR in its Connection layer, including
      // retriable ones it then retries (e.g. a coordinator still loading). A failure that
      // matters reaches the caller as an exception, so these are warnings here.
      const name = namespace === 'Connection' && level === logLevel.ERROR ? 'warn' : (levelNames[level] ?? 'info');
      logger[name]({ kafkajs: namespace, ...extra }, message);
    },
  };
  if (settings.ssl === true) config.ssl = true;
  else if (settings.ssl) {
    config.ssl = {
      rejectUnauthorized: settings.ssl.reject_unauthorized,
      ...(settings.ssl.ca_file ? { ca: [readFileSync(settings.ssl.ca_file, 'utf8')] } : {}),
      ...(settings.ssl.cert_file ? { cert: readFileSync(settings.ssl.cert_file, 'utf8') } : {}),
      ...(settings.ssl.key_file ? { key: readFileSync(settings.ssl.key_file, 'utf8') } : {}),
    };
  }
  if (settings.sasl) {
    const password =
      process.env.BURSTWATCH_KAFKA_PASSWORD ??
      (settings.sasl.password_file ? readFileSync(settings.sasl.password_file, 'utf8').trim() : settings.sasl.password) ??
      '';
    config.sasl = { mechanism: settings.sasl.mechanism, username: settings.sasl.username, password } as SASLOptions;
  }
  return new Kafka(config);
}

/**
 * Creates `topic` with the given configs if it is missing; if it exists, checks that
 * `cleanup.policy` matches and fails loudly otherwise (an operator's topic is not altered silently).
 */
export async function ensureTopic(admin: Admin, spec: TopicSpec): Promise<void> {
  const existing = await admin.listTopics();
  if (!existing.includes(spec.topic)) {
    try {
      const created = await admin.createTopics({
        waitForLeaders: true,
        topics: [
          {
            topic: spec.topic,
            numPartitions: spec.partitions,
            replicationFactor: spec.replicationFactor,
            configEntries: Object.entries(spec.configs).map(([name, value]) => ({ name, value })),
          },
        ],
      });
      if (created) logger.info({ topic: spec.topic, configs: spec.configs }, 'topic created');
    } catch (err) {
      // Another member may have created it at the same moment.
      if (!(err as { type?: string }).type?.includes('TOPIC_ALREADY_EXISTS')) throw err;
    }
    await untilServed(admin, spec.topic);
    return;
  }
  const wanted = spec.configs['cleanup.policy'];
  if (!wanted) return;
  const res = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2 /* TOPIC */, name: spec.topic, configNames: ['cleanup.policy'] }] });
  const actual = res.resources[0]?.configEntries.find((e) => e.configName === 'cleanup.policy')?.configValue ?? '';
  if (!actual.split(',').includes(wanted)) {
    throw new BurstwatchError(
      `topic ${spec.topic} has cleanup.policy=${actual}, but it must include ${wanted}; fix it with ` +
        `kafka-configs --alter --entity-type topics --entity-name ${spec.topic} --add-config cleanup.policy=${wanted}`,
    );
  }
}

/**
 * Waits (up to 30 s) until every partition of a new topic answers a ListOffsets request.
 * kafkajs' `waitForLeaders` waits for leaders in the metadata only, and a broker may still
 * answer "This server does not host this topic-partition" for a moment after that
 * (tulios/kafkajs#815), which would fail the first start of a stage.
 */
async function untilServed(admin: Admin, topic: string): Promise<void> {
  const until = Date.now() + 30_000;
  for (;;) {
    try {
      await admin.fetchTopicOffsets(topic);
      return;
    } catch (err) {
      if ((err as { type?: string }).type === 'TOPIC_AUTHORIZATION_FAILED') {
        // Also what a topic that exists but is hidden from us looks like: createTopics said "already exists".
        throw new BurstwatchError(`topic ${topic}: not authorized; grant this service's principal the ACLs docs/security.md lists for it`, { cause: err });
      }
      if (Date.now() > until) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** A topic to create if missing, with its configs (see {@link ensureTopic} and {@link TopicWriter}). */
export interface TopicSpec {
  topic: string;
  partitions: number;
  replicationFactor: number;
  configs: Record<string, string>;
}

/** Below the brokers' default message.max.bytes (1 MB) per record batch, with room for overhead. */
export const CHUNK_BYTES = 512 * 1024;

/** Bytes a message takes in a record batch, roughly (key, value, headers, and 64 bytes of framing). */
export function messageBytes(m: Message): number {
  const len = (v: unknown): number => (v == null ? 0 : typeof v === 'string' ? Buffer.byteLength(v) : Buffer.isBuffer(v) ? v.length : 0);
  let n = 64 + len(m.key) + len(m.value);
  for (const [k, v] of Object.entries(m.headers ?? {})) n += Buffer.byteLength(k) + (Array.isArray(v) ? v.reduce((a: number, x) => a + len(x), 0) : len(v));
  return n;
}

/**
 * Splits messages into sends of at most `maxBytes` each (a larger message goes alone): kafkajs
 * puts one send's messages for a partition into one record batch, and the broker refuses a
 * batch over the topic's max.message.bytes as a whole.
 */
export function* recordChunks(messages: Message[], maxBytes = CHUNK_BYTES): Generator<Message[]> {
  let chunk: Message[] = [];
  let bytes = 0;
  for (const m of messages) {
    const size = messageBytes(m);
    if (chunk.length > 0 && bytes + size > maxBytes) {
      yield chunk;
      chunk = [];
      bytes = 0;
    }
    chunk.push(m);
    bytes += size;
  }
  if (chunk.length > 0) yield chunk;
}

/** The topic's effective max.message.bytes (its own setting or the broker's default), or undefined if it cannot be read. */
export async function topicMaxMessageBytes(admin: Admin, topic: string): Promise<number | undefined> {
  try {
    const res = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2 /* TOPIC */, name: topic, configNames: ['max.message.bytes'] }] });
    const v = Number(res.resources[0]?.configEntries.find((e) => e.configName === 'max.message.bytes')?.configValue);
    return Number.isFinite(v) && v > 0 ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A buffered writer to one topic it creates if missing: messages are queued by `enqueue` and
 * sent by `flush`, which resolves only once every in-sync replica has them. The dead-letter
 * and edge-rule sinks are both this, with their own message shapes.
 */
export class TopicWriter {
  private producer: Producer | null = null;
  private pending: Message[] = [];
  /** Messages acknowledged so far (a metric). */
  sent = 0;
  /** Sends retried (a metric). */
  retries = 0;
  /** Called after each acknowledged send with its message count and duration (metrics: batch latency). */
  onBatch: ((messages: number, seconds: number) => void) | null = null;

  constructor(
    private readonly kafka: Kafka,
    readonly spec: TopicSpec,
  ) {}

  /** The topic's effective max.message.bytes, read at connect (undefined if it could not be read). */
  maxMessageBytes: number | undefined;

  /** Creates the topic if needed and connects an idempotent producer with one request in flight, so each key's messages stay in order. */
  async connect(): Promise<void> {
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      await ensureTopic(admin, this.spec);
      this.maxMessageBytes = await topicMaxMessageBytes(admin, this.spec.topic);
    } finally {
      await admin.disconnect();
    }
    this.producer = this.kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
    await this.producer.connect();
  }

  /** Queues a message for the next {@link flush}. */
  enqueue(message: Message): void {
    this.pending.push(message);
  }

  /**
   * Sends what is queued and waits for the acknowledgements. Throws if not connected: nothing
   * may be lost quietly. Flushes are chained, so when one resolves, everything queued before
   * it was called is acknowledged; a failed send puts its messages back at the head of the queue.
   */
  flush(): Promise<void> {
    const run = async (): Promise<void> => {
      if (this.pending.length === 0) return;
      if (!this.producer) throw new BurstwatchError(`topic ${this.spec.topic} written before connect()`);
      const producer = this.producer;
      const messages = this.pending;
      this.pending = [];
      const t0 = performance.now();
      let acked = 0;
      try {
        const limit = Math.min(CHUNK_BYTES * 8, this.maxMessageBytes ?? CHUNK_BYTES);
        for (const chunk of recordChunks(messages, limit)) {
          // acks -1: resolved only once every in-sync replica has them; kafkajs marks what is retriable.
          await withRetry(() => producer.send({ topic: this.spec.topic, acks: -1, messages: chunk }), {
            retries: 8,
            isRetriable: (err) => (err as { retriable?: boolean }).retriable === true,
            onRetry: () => this.retries++,
          });
          acked += chunk.length;
          this.sent += chunk.length;
        }
        this.onBatch?.(messages.length, (performance.now() - t0) / 1000);
      } catch (err) {
        // What was not acknowledged goes back to the head of the queue.
        this.pending = messages.slice(acked).concat(this.pending);
        throw err;
      }
    };
    const p = this.inflight.then(run, run);
    this.inflight = p.catch(() => undefined);
    return p;
  }

  private inflight: Promise<void> = Promise.resolve();

  /** Flushes, then disconnects. */
  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      await this.producer?.disconnect();
      this.producer = null;
    }
  }
}
