import type { Consumer, EachBatchPayload, Kafka } from 'kafkajs';
import type { Config } from '../config.js';
import { DecodeError, withRetry } from '../errors.js';
import { logger } from '../logger.js';
import type { Pipeline } from '../pipeline.js';
import type { RequestLogDecoder } from '../schemas/codec.js';
import type { DeadLetterSink } from './dead-letter.js';

/** Counters of the source (exported as metrics). */
export interface SourceStats {
  /** Messages fetched. */
  messages: number;
  /** Records decoded and handed to the windows. */
  decoded: number;
  /** Messages sent to the dead-letter topic. */
  deadLettered: number;
  /** Offset commits. */
  commits: number;
  /** Messages delivered again after a restart or rebalance and skipped, being already in the windows. */
  redelivered: number;
}

/** What is stored with each committed offset, so a restart does not emit closed windows again. */
interface CommitMetadata {
  v: 1;
  /** Start of the oldest window not yet emitted (epoch ms). */
  horizon: number;
}

/** Parses commit metadata written by {@link KafkaSource}; null for anything else. */
export function parseCommitMetadata(s: string | null | undefined): CommitMetadata | null {
  if (!s) return null;
  try {
    const m = JSON.parse(s) as Partial<CommitMetadata>;
    return m.v === 1 && typeof m.horizon === 'number' && Number.isFinite(m.horizon) ? { v: 1, horizon: m.horizon } : null;
  } catch {
    return null;
  }
}

/**
 * The live source: a kafkajs consumer group reading request logs with `eachBatch`.
 *
 * For each batch: decode (registry look-ups first, retried when the registry is down), send
 * undecodable messages to the dead-letter topic, feed the rest to the windows, process the
 * windows the watermark closed, flush every sink, and only then commit, per partition, the
 * oldest offset that an open window still depends on. The start of the oldest unemitted
 * window goes into the commit metadata; after a restart, windows before it are not emitted
 * again, and the records after the committed offset rebuild the open ones exactly.
 * Awaiting the sinks inside eachBatch is the backpressure: nothing more is fetched meanwhile.
 */
export class KafkaSource {
  private consumer: Consumer | null = null;
  private readonly committed = new Map<number, number>();
  /** Partitions of the input topic this member owns now. */
  private assigned = new Set<number>();
  private idleTimer: NodeJS.Timeout | null = null;
  /** Serialises batch processing and the idle timer. */
  private chain: Promise<void> = Promise.resolve();
  private failure: unknown = null;
  private stopping = false;
  readonly stats: SourceStats = { messages: 0, decoded: 0, deadLettered: 0, commits: 0, redelivered: 0 };
  /** Becomes true once the group is joined and state is restored. */
  ready = false;

  constructor(
    private readonly kafka: Kafka,
    private readonly config: Config,
    private readonly decoder: RequestLogDecoder,
    private readonly deadLetter: DeadLetterSink,
    private readonly pipeline: Pipeline,
    private readonly clock: () => number = Date.now,
    /** Where records too late for every window are copied (windows.late_topic); null counts them only. */
    private readonly late: DeadLetterSink | null = null,
  ) {}

  /** Restores the emitted horizon, joins the group and starts consuming. Resolves once running. */
  async start(): Promise<void> {
    const { topic, group_id: groupId } = this.config.input;
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      let warned = false;
      while (!(await admin.listTopics()).includes(topic)) {
        if (this.stopping) return;
        if (!warned) logger.warn({ topic }, 'input topic does not exist yet; waiting for it to be created');
        warned = true;
        await new Promise((r) => setTimeout(r, 2000));
      }
      {
        const offsets = await admin.fetchOffsets({ groupId, topics: [topic] });
        for (const t of offsets) {
          for (const p of t.partitions) {
            const meta = parseCommitMetadata(p.metadata);
            if (meta) this.pipeline.windows.restoreHorizon(meta.horizon);
            if (Number(p.offset) >= 0) this.committed.set(p.partition, Number(p.offset));
          }
        }
        if (this.pipeline.windows.horizon !== null) {
          logger.info({ horizon: new Date(this.pipeline.windows.horizon).toISOString() }, 'restored emitted-window horizon from committed offsets');
        }
      }
    } finally {
      await admin.disconnect();
    }
    const consumer = this.kafka.consumer({
      groupId,
      maxBytesPerPartition: this.config.input.max_bytes_per_partition,
      allowAutoTopicCreation: false,
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      const assigned = new Set<number>(e.payload.memberAssignment[topic] ?? []);
      for (const p of this.assigned) if (!assigned.has(p)) this.pipeline.windows.unregisterPartition(p);
      for (const p of assigned) this.pipeline.windows.registerPartition(p);
      this.assigned = assigned;
      logger.info({ topic, partitions: [...assigned] }, 'partitions assigned');
      this.ready = true;
      void consumer
        .describeGroup()
        .then((g) => {
          if (g.members.length > 1) {
            logger.warn(
              { group: groupId, members: g.members.length },
              'more than one member in the consumer group: window state is per member until the repartition stage lands, ' +
                'so entities whose records span members are aggregated in parts; run one member per group for now',
            );
          }
        })
        .catch(() => undefined);
    });
    consumer.on(consumer.events.CRASH, (e) => {
      logger.error({ err: e.payload.error?.message, restart: e.payload.restart }, 'consumer crashed');
      if (!e.payload.restart) this.failure = e.payload.error;
    });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: this.config.input.from_beginning });
    await consumer.run({
      autoCommit: false,
      // Offsets are resolved only once a batch is fully handled: a batch skipped while stopping
      // or rebalancing is fetched again rather than passed over in memory.
      eachBatchAutoResolve: false,
      eachBatch: (payload) => this.serial(() => this.handleBatch(payload)),
    });
    this.idleTimer = setInterval(() => {
      void this.serial(() => this.onIdle()).catch((err: unknown) => {
        this.failure = err;
        logger.error({ err: (err as Error).message }, 'idle flush failed');
      });
    }, 1000);
    this.idleTimer.unref();
  }

  /** An error that stopped the consumer for good, if any. */
  get fatal(): unknown {
    return this.failure;
  }

  private serial(fn: () => Promise<void>): Promise<void> {
    const next = this.chain.then(fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async handleBatch({ batch, heartbeat, isStale, isRunning, resolveOffset }: EachBatchPayload): Promise<void> {
    if (this.stopping || isStale() || !isRunning()) return;
    const partition = batch.partition;
    await withRetry(() => this.decoder.prepare(batch.messages.map((m) => m.value)), {
      retries: 20,
      maxDelayMs: 15_000,
      onRetry: (err, attempt) => logger.warn({ err: (err as Error).message, attempt }, 'schema registry unavailable; retrying batch'),
    });
    const now = this.clock();
    // After a consumer restart or a rebalance, kafkajs resumes from the committed offset, which
    // lags behind what the open windows already hold by design. Those messages are skipped, so
    // the in-memory state takes every record exactly once.
    const ingested = this.pipeline.windows.lastOffsetOf(partition);
    for (const m of batch.messages) {
      const offset = Number(m.offset);
      if (offset <= ingested) {
        this.stats.redelivered++;
        continue;
      }
      this.stats.messages++;
      try {
        const log = this.decoder.decode(m.value);
        if (log.timestamp > now + this.config.input.max_future_ms) {
          throw new DecodeError(
            'future_timestamp',
            `timestamp ${new Date(log.timestamp).toISOString()} is ${Math.round((log.timestamp - now) / 1000)} s ahead of this host's clock ` +
              `(input.max_future_ms = ${this.config.input.max_future_ms})`,
          );
        }
        const outcome = this.pipeline.ingest(log, partition, offset, now);
        this.stats.decoded++;
        if (outcome === 'late' && this.late) {
          this.late.add({
            topic: batch.topic, partition, offset: m.offset, key: m.key, value: m.value, headers: m.headers, timestamp: m.timestamp,
            reason: 'late',
            message:
              `event time ${new Date(log.timestamp).toISOString()} is in a pane that partition ${partition} had already sealed ` +
              `(more than windows.allowed_lateness_ms = ${this.config.windows.allowed_lateness_ms} behind its watermark)`,
          });
        }
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
        this.deadLetter.add({
          topic: batch.topic,
          partition,
          offset: m.offset,
          key: m.key,
          value: m.value,
          headers: m.headers,
          timestamp: m.timestamp,
          reason: err.reason,
          message: err.message,
        });
        this.pipeline.windows.markProcessed(partition, offset);
        this.stats.deadLettered++;
      }
    }
    this.pipeline.windows.setLagging(partition, Number(batch.lastOffset()) + 1 < Number(batch.highWatermark));
    await this.deadLetter.flush();
    await this.late?.flush();
    await this.completeWork();
    resolveOffset(batch.lastOffset());
    await heartbeat();
  }

  private async onIdle(): Promise<void> {
    this.pipeline.windows.onIdle(this.clock());
    if (this.pipeline.hasClosedWindows) await this.completeWork();
  }

  /** Processes closed windows, makes the sinks durable, then commits what is safe. */
  private async completeWork(): Promise<void> {
    await this.pipeline.processClosed();
    await this.pipeline.flush();
    await this.commitSafe();
  }

  private async commitSafe(): Promise<void> {
    if (!this.consumer) return;
    const horizon = this.pipeline.windows.horizon;
    const metadata = horizon === null ? null : JSON.stringify({ v: 1, horizon } satisfies CommitMetadata);
    const toCommit: { topic: string; partition: number; offset: string; metadata: string | null }[] = [];
    for (const [partition, offset] of this.pipeline.windows.safeOffsets()) {
      // Never commit for a partition another member owns now: that would overwrite its progress.
      if (!this.assigned.has(partition)) continue;
      if ((this.committed.get(partition) ?? -1) >= offset && metadata === null) continue;
      toCommit.push({ topic: this.config.input.topic, partition, offset: String(offset), metadata });
    }
    if (toCommit.length === 0) return;
    await this.consumer.commitOffsets(toCommit);
    for (const c of toCommit) this.committed.set(c.partition, Number(c.offset));
    this.stats.commits++;
  }

  /** Offsets committed so far, per partition. */
  get committedOffsets(): ReadonlyMap<number, number> {
    return this.committed;
  }

  /** Stops fetching, lets the batch in hand finish, flushes the sinks, commits, disconnects. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.idleTimer) clearInterval(this.idleTimer);
    this.idleTimer = null;
    const consumer = this.consumer;
    if (!consumer) return;
    // Waits for the batch in hand; later batches return at once without being resolved.
    await this.serial(async () => {
      await this.pipeline.flush();
      await this.commitSafe();
    });
    await consumer.stop();
    await consumer.disconnect();
    this.consumer = null;
  }
}
