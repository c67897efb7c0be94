import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Consumer, Kafka } from 'kafkajs';
import { z } from 'zod';
import { createKafka, kafkaConfigSchema } from '../consumers/kafka-client.js';
import { BurstwatchError, ConfigError, errorMessage } from '../errors.js';
import { logger as defaultLogger, type Logger } from '../logger.js';
import type { EdgeRule } from '../schemas/index.js';
import { VerifiedCrawlers, verifiedCrawlerSchema } from './crawlers.js';
import { RuleTable, type ApplyOutcome, type MatchDecision, type MatchRequest, type RuleTableCounters } from './rule-table.js';

/**
 * Options of {@link EdgeRuleSubscriber}, validated with zod; unknown keys are rejected and a
 * bad value throws a {@link ConfigError} naming the key. Give `brokers` or `kafka`, not both.
 */
export const edgeSubscriberOptionsSchema = z
  .object({
    /** Bootstrap brokers, `host:port`; a kafkajs client is made with burstwatch's logging. */
    brokers: z.array(z.string().regex(/^[^\s:]+:\d+$/, { message: "brokers look like 'host:9092'" })).min(1).optional(),
    /** A kafkajs client of your own (TLS, SASL, logging as you set them). */
    kafka: z
      .custom<Kafka>((v) => typeof v === 'object' && v !== null && typeof (v as Kafka).consumer === 'function' && typeof (v as Kafka).admin === 'function', {
        message: 'must be a kafkajs Kafka instance',
      })
      .optional(),
    /** Client id when `brokers` is given. Default `burstwatch-edge`. */
    client_id: z.string().min(1).default('burstwatch-edge'),
    /** The compacted rule topic (CONTRACTS §4). Default `edge-rules`. */
    topic: z.string().min(1).default('edge-rules'),
    /** Most rules held; beyond it new rule ids are refused (counted), updates of held ones still apply. Default 100 000. */
    max_rules: z.number().int().positive().default(100_000),
    /** How often expired rules are purged, ms (they never match in between). Default 1 000. */
    purge_interval_ms: z.number().int().positive().default(1_000),
    /** `start()` fails if the topic is not read up to its high watermark within this, ms. Default 60 000. */
    bootstrap_timeout_ms: z.number().int().positive().default(60_000),
    /** Wall clock for expiry, epoch ms. Default `Date.now`. */
    clock: z.custom<() => number>((v) => typeof v === 'function', { message: 'must be a function returning epoch ms' }).optional(),
    /**
     * Crawlers exempt from every rule when verified per request: the user agent claims one and
     * the address is in its published ranges (edge/crawlers.ts). The allowlist by verified
     * crawler lives here, at the edge, where each request's address and user agent are known.
     * Default none.
     */
    verified_crawlers: z.array(verifiedCrawlerSchema).default([]),
    /** pino logger. Default burstwatch's (JSON lines on stderr). */
    logger: z.custom<Logger>((v) => typeof v === 'object' && v !== null && typeof (v as Logger).warn === 'function', { message: 'must be a pino logger' }).optional(),
  })
  .strict()
  .superRefine((o, ctx) => {
    if ((o.brokers === undefined) === (o.kafka === undefined)) {
      ctx.addIssue({ code: 'custom', path: [o.kafka ? 'kafka' : 'brokers'], message: 'give either brokers or kafka (exactly one)' });
    }
  });

/** Options as given to {@link EdgeRuleSubscriber} (defaults filled in by validation). */
export type EdgeSubscriberOptions = z.input<typeof edgeSubscriberOptionsSchema>;

/** One message of the rule topic, once applied (the `change` event). */
export interface EdgeRuleChange {
  /** What the message was: an upsert (a rule value, valid or not) or a tombstone. */
  op: 'upsert' | 'delete';
  /** The Kafka key (the rule id), or null for a keyless message. */
  rule_id: string | null;
  /** What applying it did: upsert, delete, expired (already past its expiry), refused (at the cap) or rejected (malformed). */
  outcome: ApplyOutcome;
  /** Event time of the change: the `burstwatch.at` header, else the Kafka timestamp, epoch ms. */
  at: number;
  partition: number;
  offset: string;
  /** True for messages read before the subscriber was ready (the bootstrap). */
  bootstrap: boolean;
}

/** Counters of an {@link EdgeRuleSubscriber} (metrics; they only grow). */
export interface EdgeSubscriberCounters extends RuleTableCounters {
  /** Messages read from the topic. */
  messages: number;
}

export interface EdgeRuleSubscriberEvents {
  /** The topic has been read up to the high watermark of every partition as of `start()`. */
  ready: [];
  /** A message was applied (or rejected). */
  change: [EdgeRuleChange];
  /** The consumer stopped on an error it cannot recover from. */
  error: [Error];
}

/** Turns the first zod issue into a {@link ConfigError} naming the option. */
function parseOptions(raw: unknown): z.output<typeof edgeSubscriberOptionsSchema> {
  const res = edgeSubscriberOptionsSchema.safeParse(raw ?? {});
  if (res.success) return res.data;
  const issue = res.error.issues[0] as z.core.$ZodIssue;
  if (issue.code === 'unrecognized_keys') {
    const key = [...issue.path.map(String), (issue as { keys: string[] }).keys[0] ?? '?'].join('.');
    const accepted = issue.path.length === 0 ? Object.keys(edgeSubscriberOptionsSchema.shape) : Object.keys(verifiedCrawlerSchema.shape);
    throw new ConfigError(key, `unknown option; accepted: ${accepted.join(', ')}`);
  }
  throw new ConfigError(issue.path.map(String).join('.') || '(options)', issue.message);
}

/**
 * The edge side of CONTRACTS §4: holds the rules of the compacted edge-rule topic and answers
 * `match(request)` in O(1).
 *
 * `start()` reads the topic from the beginning up to the high watermark that every partition
 * had when it was called, then resolves (and emits `ready`); from then on it follows updates.
 * An edge node always re-bootstraps, so it commits no offsets: it joins a consumer group of its
 * own (kafkajs cannot assign partitions by hand) and deletes it on `stop()`; if kafkajs
 * restarts the consumer after an error, it re-reads from the beginning and skips by offset what
 * was already applied, so an old version of a rule never reappears. Rules past their
 * `expires_at` never match, whether or not their tombstone has come, and are purged every
 * `purge_interval_ms`. Malformed messages are rejected, counted by reason and logged, never
 * thrown. At `max_rules`, new rule ids are refused (counted) while the rules held keep being
 * updated and deleted: refusing the newcomer keeps every decision already made stable, where
 * evicting would silently lift a rule in force; size the cap so that it is never reached.
 */
export class EdgeRuleSubscriber extends EventEmitter<EdgeRuleSubscriberEvents> {
  private readonly options: z.output<typeof edgeSubscriberOptionsSchema>;
  private readonly kafka: Kafka;
  private readonly table: RuleTable;
  private readonly crawlers: VerifiedCrawlers;
  /** Requests exempted as a verified crawler by {@link match} (a metric). */
  exemptByCrawler = 0;
  private readonly log: Logger;
  private consumer: Consumer | null = null;
  private groupId = '';
  private timer: NodeJS.Timeout | null = null;
  private messages = 0;
  /** Per partition, the offset after the last message applied. */
  private readonly positions = new Map<number, number>();
  private isReady = false;
  private stopped = false;

  constructor(options: EdgeSubscriberOptions) {
    super();
    this.options = parseOptions(options);
    this.log = this.options.logger ?? defaultLogger;
    this.kafka = this.options.kafka ?? createKafka(kafkaConfigSchema.parse({ brokers: this.options.brokers, client_id: this.options.client_id }));
    this.table = new RuleTable({ maxRules: this.options.max_rules, clock: this.options.clock ?? Date.now, logger: this.log });
    this.crawlers = new VerifiedCrawlers(this.options.verified_crawlers);
  }

  /** The topic followed. */
  get topic(): string {
    return this.options.topic;
  }

  /** Whether the bootstrap is done. */
  get ready(): boolean {
    return this.isReady;
  }

  /**
   * Bootstraps from the topic up to its high watermarks, then keeps following it. Resolves when
   * ready. Throws a retriable {@link BurstwatchError} if the topic does not exist (it is not
   * created here: an auto-created topic would not be compacted) or the bootstrap takes longer
   * than `bootstrap_timeout_ms`.
   */
  async start(): Promise<void> {
    if (this.consumer) throw new BurstwatchError('EdgeRuleSubscriber.start() called twice');
    const topic = this.options.topic;
    const admin = this.kafka.admin();
    await admin.connect();
    const pending = new Map<number, number>(); // partition → last offset to read
    try {
      const topics = await admin.listTopics();
      if (!topics.includes(topic)) {
        throw new BurstwatchError(`edge-rule topic ${topic} does not exist (yet): start the pipeline, or check the topic name`, { retriable: true });
      }
      for (const p of await admin.fetchTopicOffsets(topic)) {
        if (Number(p.high) > Number(p.low)) pending.set(p.partition, Number(p.high) - 1);
      }
    } finally {
      await admin.disconnect();
    }
    const t0 = Date.now();
    let signalReady: () => void = () => undefined;
    let fail: (err: Error) => void = () => undefined;
    const caughtUp = new Promise<void>((resolve, reject) => {
      signalReady = resolve;
      fail = reject;
    });
    const reached = (partition: number, lastOffset: string | number | null | undefined): void => {
      const target = pending.get(partition);
      if (target === undefined || lastOffset === null || lastOffset === undefined || Number(lastOffset) < target) return;
      pending.delete(partition);
      if (pending.size === 0) signalReady();
    };
    this.groupId = `${this.options.client_id}-${randomUUID()}`;
    // A short fetch wait bounds how long stop() waits for the fetch in flight; data is returned as soon as it arrives either way.
    const consumer = this.kafka.consumer({ groupId: this.groupId, allowAutoTopicCreation: false, readUncommitted: false, maxWaitTimeInMs: 1000 });
    this.consumer = consumer;
    // Fires also for batches holding only transaction markers, which eachBatch never sees.
    consumer.on(consumer.events.END_BATCH_PROCESS, (e) => reached(e.payload.partition, e.payload.lastOffset));
    consumer.on(consumer.events.CRASH, (e) => {
      const err = e.payload.error;
      if (e.payload.restart) {
        this.log.warn({ topic, err: errorMessage(err) }, 'edge-rule consumer crashed; kafkajs restarts it');
        return;
      }
      this.log.error({ topic, err: errorMessage(err) }, 'edge-rule consumer stopped');
      fail(err);
      if (this.isReady && this.listenerCount('error') > 0) this.emit('error', err);
    });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch, heartbeat, isRunning }) => {
        const partition = batch.partition;
        for (const m of batch.messages) {
          if (!isRunning()) return;
          // After kafkajs restarts a crashed consumer, the group (with no committed offsets)
          // starts again from the beginning: skip what was applied, so an old version of a rule
          // never comes back, even for a moment.
          const offset = Number(m.offset);
          if (offset < (this.positions.get(partition) ?? 0)) continue;
          this.positions.set(partition, offset + 1);
          this.messages++;
          const key = m.key === null ? null : m.key.toString('utf8');
          const outcome = this.table.applyMessage(key, m.value);
          if (this.listenerCount('change') > 0) {
            const header = m.headers?.['burstwatch.at'];
            const at = Number(header === undefined ? m.timestamp : header.toString());
            this.emit('change', {
              op: m.value === null ? 'delete' : 'upsert',
              rule_id: key,
              outcome,
              at: Number.isFinite(at) ? at : Number(m.timestamp),
              partition,
              offset: m.offset,
              bootstrap: !this.isReady,
            });
          }
        }
        reached(partition, batch.lastOffset());
        await heartbeat();
      },
    });
    if (pending.size === 0) signalReady();
    let timeout: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        caughtUp,
        new Promise<never>((_, reject) => {
          timeout = setTimeout(
            () =>
              reject(
                new BurstwatchError(
                  `edge-rule topic ${topic}: bootstrap not done after ${this.options.bootstrap_timeout_ms} ms (partitions still behind: ${[...pending.keys()].join(', ')})`,
                  { retriable: true },
                ),
              ),
            this.options.bootstrap_timeout_ms,
          );
        }),
      ]);
    } catch (err) {
      await this.stop();
      throw err;
    } finally {
      clearTimeout(timeout);
    }
    this.timer = setInterval(() => this.table.purgeExpired(), this.options.purge_interval_ms);
    this.timer.unref();
    this.isReady = true;
    this.log.info({ topic, rules: this.table.size, messages: this.messages, ms: Date.now() - t0 }, 'edge rules bootstrapped');
    this.emit('ready');
  }

  /** The decision for a request (any subset of asn, ja4, country, host, client_ip, user_agent); see {@link MatchDecision}. */
  match(request: MatchRequest): MatchDecision & { crawler?: string } {
    if (this.crawlers.size > 0) {
      const crawler = this.crawlers.verify(request);
      if (crawler !== null) {
        this.exemptByCrawler++;
        return { action: null, rule: null, shadow: [], crawler };
      }
    }
    return this.table.match(request);
  }

  /** The rules in force now (not expired), by rule id. */
  rules(): EdgeRule[] {
    return this.table.rules();
  }

  /** The number of rules in force now (expired ones are purged first, which costs a scan only when one has expired). */
  get size(): number {
    this.table.purgeExpired();
    return this.table.size;
  }

  /** Counters: messages, applied, deleted, tombstones of keys not held, rejected by reason, refused at the cap, expired. */
  get counters(): EdgeSubscriberCounters {
    const c = this.table.counters;
    return { ...c, rejected: { ...c.rejected }, messages: this.messages };
  }

  /** Stops following the topic and deletes the subscriber's consumer group. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const consumer = this.consumer;
    if (!consumer) return;
    await consumer.disconnect();
    const admin = this.kafka.admin();
    try {
      await admin.connect();
      await admin.deleteGroups([this.groupId]);
    } catch (err) {
      this.log.debug({ group: this.groupId, err: errorMessage(err) }, 'could not delete the edge consumer group (it expires by itself)');
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  }
}
