import type { Admin, Consumer, EachBatchPayload, Kafka, KafkaMessage, Message, Producer } from 'kafkajs';
import { backoffDelay, BurstwatchError } from '../errors.js';
import { logger } from '../logger.js';
import { RESTORE_ATTEMPTS, RestoreError } from './changelog.js';
import { recordChunks } from './kafka-client.js';

/** Messages a task wants written in the same transaction as its input offset. */
export interface StageOutput {
  send(topic: string, messages: Message[]): void;
  /** Messages queued so far. */
  readonly size: number;
}

/** Where a partition's committed progress stands: the offset to resume from and the metadata stored with it. */
export interface CommittedPoint {
  /** Next offset to read, or -1 when the group has committed nothing for the partition. */
  offset: number;
  metadata: string | null;
}

/** The state of one input partition of a stage: restored from its checkpoint, fed batches, checkpointed. */
export interface StageTask {
  /** Handles the messages of a batch (in offset order); `lagging` says more are waiting. */
  handle(messages: KafkaMessage[], out: StageOutput, nowMs: number, lagging: boolean): Promise<void>;
  /** Wall-clock tick (live idleness); `highWatermark` asks the broker for the partition's, once per tick at most. Optional. */
  tick?(nowMs: number, out: StageOutput, highWatermark: () => Promise<number>): Promise<void>;
  /** The offset to commit (the oldest message the state still needs) and its metadata. */
  commitPoint(): CommittedPoint;
}

/** Settings of a {@link TransactionalStage}. */
export interface StageSettings {
  /** For logs and transactional ids. */
  name: string;
  groupId: string;
  topic: string;
  /** Prefix of the per-partition transactional ids: `<prefix>-<partition>`. */
  transactionalIdPrefix: string;
  maxBytesPerPartition?: number;
  /** Group session timeout, ms. Default 30 000. */
  sessionTimeoutMs?: number;
  /** Builds (and restores) the task of a partition from its committed point. */
  createTask(partition: number, committed: CommittedPoint): Promise<StageTask>;
  /** Makes every side effect outside Kafka durable (ClickHouse, dead letters) before offsets commit. */
  beforeCommit(): Promise<void>;
  /** Period of {@link StageTask.tick}, ms; 0 for none. Default 1 000. */
  tickMs?: number;
  /**
   * With no committed offset, start at the earliest record (true) or at the end, with only
   * records written from then on (input.from_beginning). Default true; internal topics always start at the earliest.
   */
  fromBeginning?: boolean;
}

/** Counters of a stage. */
export interface StageStats {
  batches: number;
  messages: number;
  transactions: number;
  restores: number;
  /** Batches or transactions that failed and were retried from the checkpoint. */
  retries: number;
}

/**
 * A consumer-group stage whose output and input offsets are committed atomically, Kafka
 * Streams style: each input partition has its own task (state) and its own transactional
 * producer (`<prefix>-<partition>`, so a new owner of the partition fences the old one). A
 * batch's output messages, its offset and the task's checkpoint metadata go in one
 * transaction, after `beforeCommit` has made the non-Kafka side effects durable.
 *
 * On every rebalance the tasks are dropped and rebuilt from the committed point: state is
 * exactly the last checkpoint plus what is re-read after it, whoever owned it before.
 */
export class TransactionalStage {
  private consumer: Consumer | null = null;
  private readonly tasks = new Map<number, StageTask>();
  private readonly producers = new Map<number, Producer>();
  private assigned = new Set<number>();
  private chain: Promise<void> = Promise.resolve();
  /** The last point committed (or read at restore) per partition: where a failed task starts again. */
  private readonly committedPoints = new Map<number, CommittedPoint>();
  private readonly failures = new Map<number, number>();
  /** Next offset after what the current tasks have consumed, transaction markers included. */
  private readonly consumedTo = new Map<number, number>();
  private timer: NodeJS.Timeout | null = null;
  private admin: Promise<Admin> | null = null;
  /** First offset read of each partition that had no committed offset (for input.from_beginning = false). */
  private readonly startedAt = new Map<number, number>();
  private stopping = false;
  private failure: unknown = null;
  readonly stats: StageStats = { batches: 0, messages: 0, transactions: 0, restores: 0, retries: 0 };
  /** When the work in hand (a batch, a tick) started (this stage's clock), or null. */
  private busySince: number | null = null;
  /** The group heartbeat of the latest batch (kafkajs hands it to eachBatch only). */
  private heartbeat: (() => Promise<void>) | null = null;
  /** True once the group is joined. */
  ready = false;

  constructor(
    private readonly kafka: Kafka,
    private readonly settings: StageSettings,
    private readonly clock: () => number = Date.now,
  ) {}

  private get sessionTimeoutMs(): number {
    return this.settings.sessionTimeoutMs ?? 30_000;
  }

  /** Heartbeat period, between batches (kafkajs) and during a long one (ours): kafkajs' 3 s, at most a third of the session timeout. */
  private get heartbeatMs(): number {
    return Math.min(3_000, Math.floor(this.sessionTimeoutMs / 3));
  }

  /** The stage's name (logs, metrics). */
  get name(): string {
    return this.settings.name;
  }

  /** Partitions this member owns now. */
  get partitions(): readonly number[] {
    return [...this.assigned].sort((a, b) => a - b);
  }

  /** The live tasks (for metrics). */
  get liveTasks(): ReadonlyMap<number, StageTask> {
    return this.tasks;
  }

  /** An error that stopped the stage for good, if any. */
  get fatal(): unknown {
    return this.failure;
  }

  async start(): Promise<void> {
    const { groupId, topic } = this.settings;
    const consumer = this.kafka.consumer({
      groupId,
      maxBytesPerPartition: this.settings.maxBytesPerPartition ?? 10 * 1024 * 1024,
      sessionTimeout: this.sessionTimeoutMs,
      // An idle fetch returns after 1 s rather than kafkajs' 5 s: a stop waits for the fetch in flight.
      maxWaitTimeInMs: 1_000,
      heartbeatInterval: this.heartbeatMs,
      allowAutoTopicCreation: false,
      readUncommitted: false,
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      const assigned = new Set<number>(e.payload.memberAssignment[topic] ?? []);
      void this.serial(async () => {
        // State restarts from the committed checkpoint after every rebalance.
        this.tasks.clear();
        this.consumedTo.clear();
        for (const [p, producer] of this.producers) {
          if (!assigned.has(p)) {
            this.producers.delete(p);
            await producer.disconnect().catch(() => undefined);
          }
        }
        this.assigned = assigned;
        this.ready = true;
        logger.info({ stage: this.settings.name, topic, partitions: this.partitions }, 'partitions assigned');
      });
    });
    // Batches holding only transaction markers never reach eachBatch; they still mark progress.
    consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
      const { topic: t, partition, batchSize, lastOffset } = e.payload;
      if (t !== topic || batchSize > 0 || !this.tasks.has(partition)) return;
      this.consumedTo.set(partition, Math.max(this.consumedTo.get(partition) ?? 0, Number(lastOffset) + 1));
    });
    consumer.on(consumer.events.CRASH, (e) => {
      logger.error({ stage: this.settings.name, err: e.payload.error?.message, restart: e.payload.restart }, 'consumer crashed');
      if (!e.payload.restart) this.failure = e.payload.error;
    });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: this.settings.fromBeginning ?? true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: (payload) => this.serial(() => this.handleBatch(payload)),
    });
    const tickMs = this.settings.tickMs ?? 1000;
    if (tickMs > 0) {
      this.timer = setInterval(() => {
        void this.serial(() => this.tick()).catch((err: unknown) => {
          this.failure = err;
          logger.error({ stage: this.settings.name, err: (err as Error).message }, 'stage tick failed');
        });
      }, tickMs);
      this.timer.unref();
    }
  }

  /**
   * Runs the stage's work one piece at a time (batches, ticks, rebalances). A piece may wait a
   * long time on a sink in an outage (backpressure: nothing more is fetched meanwhile), so
   * while one runs the group is heartbeaten, and this member is not evicted for it.
   */
  private serial(fn: () => Promise<void>): Promise<void> {
    const busy = async (): Promise<void> => {
      this.busySince = this.clock();
      const beat = setInterval(() => void this.heartbeat?.().catch(() => undefined), this.heartbeatMs);
      try {
        await fn();
      } finally {
        clearInterval(beat);
        this.busySince = null;
      }
    };
    const next = this.chain.then(busy);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async producerFor(partition: number): Promise<Producer> {
    let p = this.producers.get(partition);
    if (!p) {
      p = this.kafka.producer({
        transactionalId: `${this.settings.transactionalIdPrefix}-${partition}`,
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
      });
      await p.connect();
      this.producers.set(partition, p);
    }
    return p;
  }

  private async taskFor(partition: number): Promise<StageTask> {
    let task = this.tasks.get(partition);
    if (task) return task;
    // The producer first: initialising its transactional id fences the partition's previous
    // owner and aborts any transaction it left open, which would otherwise hold back what a
    // read_committed restore (and the next stage) can see until the transaction times out.
    await this.producerFor(partition);
    let committed: CommittedPoint = { offset: -1, metadata: null };
    const [t] = await (await this.adminClient()).fetchOffsets({ groupId: this.settings.groupId, topics: [this.settings.topic] });
    const p = t?.partitions.find((x) => x.partition === partition);
    if (p) committed = { offset: Number(p.offset), metadata: p.metadata ?? null };
    this.committedPoints.set(partition, committed);
    task = await this.settings.createTask(partition, committed);
    this.tasks.set(partition, task);
    this.stats.restores++;
    return task;
  }

  private async handleBatch({ batch, heartbeat, isStale, isRunning, resolveOffset }: EachBatchPayload): Promise<void> {
    this.heartbeat = heartbeat;
    if (this.stopping || this.failure !== null || isStale() || !isRunning() || !this.assigned.has(batch.partition)) return;
    const partition = batch.partition;
    let task: StageTask;
    const fresh = !this.tasks.has(partition);
    try {
      task = await this.taskFor(partition);
    } catch (err) {
      await this.recover(partition, err);
      return;
    }
    await heartbeat();
    const from = (this.committedPoints.get(partition) as CommittedPoint).offset;
    const first = batch.messages[0] ? Number(batch.messages[0].offset) : Number.POSITIVE_INFINITY;
    if (fresh && from >= 0 && first > from) {
      // A task restored from a checkpoint must read from the checkpoint's offset, which the
      // consumer's position may have passed (after a failed transaction, say).
      this.consumer?.seek({ topic: this.settings.topic, partition, offset: String(from) });
      return;
    }
    const messages = from >= 0 ? batch.messages.filter((m) => Number(m.offset) >= from) : batch.messages;
    // Where a partition without a checkpoint began, so that a retry before its first commit starts there again.
    if (from < 0 && !this.startedAt.has(partition) && Number.isFinite(first)) this.startedAt.set(partition, first);
    const out = new Outbox();
    const lagging = Number(batch.lastOffset()) + 1 < Number(batch.highWatermark);
    try {
      await task.handle(messages, out, this.clock(), lagging);
      await this.commit(partition, task, out);
    } catch (err) {
      await this.recover(partition, err);
      return;
    }
    this.stats.batches++;
    this.stats.messages += messages.length;
    this.consumedTo.set(partition, Math.max(this.consumedTo.get(partition) ?? 0, Number(batch.lastOffset()) + 1));
    resolveOffset(batch.lastOffset());
    await heartbeat();
  }

  /**
   * Messages of each owned partition between what this member has consumed and the partition's
   * high watermark, asked of the broker (metrics). A partition that has had no batch since it
   * was assigned (caught up already) counts from the group's committed offset.
   */
  async lag(): Promise<Map<number, number>> {
    const out = new Map<number, number>();
    if (this.assigned.size === 0) return out;
    const offsets = await this.topicOffsets();
    let committed: Map<number, number> | null = null;
    for (const o of offsets) {
      if (!this.assigned.has(o.partition)) continue;
      let done = this.consumedTo.get(o.partition);
      if (done === undefined) {
        if (committed === null) {
          const [t] = await (await this.adminClient()).fetchOffsets({ groupId: this.settings.groupId, topics: [this.settings.topic] });
          committed = new Map((t?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
        }
        const c = committed.get(o.partition) ?? -1;
        done = c >= 0 ? c : Number(o.low);
      }
      out.set(o.partition, Math.max(0, Number(o.high) - Math.max(done, Number(o.low))));
    }
    return out;
  }

  /** How long the work in hand (a batch, a tick) has been running, ms (0 when idle): a long one waits on a sink (backpressure). */
  busyMs(): number {
    return this.busySince === null ? 0 : Math.max(0, this.clock() - this.busySince);
  }

  /**
   * After a failed batch or transaction: the task's memory is ahead of its checkpoint, so it is
   * dropped with its producer, and the consumer goes back to the checkpoint's offset. Retriable
   * errors (a broker restarting, a transaction fenced by a rebalance, a sink in an outage) are
   * retried for as long as they last, with full-jitter exponential backoff up to 10 s; anything
   * else (a bug, an authorization failure) stops the stage at once.
   */
  private async recover(partition: number, err: unknown): Promise<void> {
    const n = (this.failures.get(partition) ?? 0) + 1;
    this.failures.set(partition, n);
    this.tasks.delete(partition);
    this.consumedTo.delete(partition);
    const producer = this.producers.get(partition);
    this.producers.delete(partition);
    await producer?.disconnect().catch(() => undefined);
    if (this.stopping) return; // nothing committed: the batch is read again after the restart
    // A restore failing again and again while this stage's own group works is not an outage.
    const retriable = isRetriableStageError(err) && !(err instanceof RestoreError && n >= RESTORE_ATTEMPTS);
    this.stats.retries++;
    logger.warn(
      { stage: this.settings.name, partition, attempt: n, retriable, err: (err as Error).message },
      retriable ? 'batch failed; restarting the partition from its checkpoint' : 'batch failed with an error retrying cannot fix; stopping the stage',
    );
    if (!retriable) {
      // Thrown into kafkajs, the error would make it re-deliver the batch and restart the
      // consumer for ever. The stage stops here instead: nothing more is handled, and the
      // service reports the failure (`fatal`, /healthz 503; `burstwatch run` exits 1).
      this.failure ??= err;
      try {
        this.consumer?.pause([{ topic: this.settings.topic }]);
      } catch {
        // not running: nothing to pause
      }
      return;
    }
    await new Promise((r) => setTimeout(r, backoffDelay(n, 200, 10_000)));
    const from = this.committedPoints.get(partition)?.offset ?? -1;
    try {
      if (from >= 0) this.consumer?.seek({ topic: this.settings.topic, partition, offset: String(from) });
      else await this.seekToStart(partition);
    } catch (seekErr) {
      // The consumer itself is restarting (a broker went away): it rejoins the group, and the
      // rebuilt task starts from the committed checkpoint, where the group resumes anyway.
      logger.warn({ stage: this.settings.name, partition, err: (seekErr as Error).message }, 'could not seek back now; the group resumes from the checkpoint');
    }
  }

  private async seekToStart(partition: number): Promise<void> {
    const o = (await this.topicOffsets()).find((x) => x.partition === partition);
    const started = this.startedAt.get(partition);
    const offset = (this.settings.fromBeginning ?? true) ? (o?.low ?? '0') : started !== undefined ? String(started) : (o?.high ?? '0');
    this.consumer?.seek({ topic: this.settings.topic, partition, offset });
  }

  private async tick(): Promise<void> {
    if (this.stopping || this.failure !== null || this.tasks.size === 0) return;
    // High watermarks from the broker, fetched only if a task asks (a partition about to be called idle).
    let highs: Promise<Map<number, number>> | null = null;
    const highOf = (partition: number) => async (): Promise<number> => {
      highs ??= this.topicOffsets().then((offsets) => new Map(offsets.map((o) => [o.partition, Number(o.high)])));
      return (await highs).get(partition) ?? 0;
    };
    for (const [partition, task] of this.tasks) {
      if (!task.tick) continue;
      const out = new Outbox();
      try {
        await task.tick(this.clock(), out, highOf(partition));
        if (out.size > 0) await this.commit(partition, task, out);
      } catch (err) {
        await this.recover(partition, err);
      }
    }
  }

  /** Sends `out`, the task's offset and metadata in one transaction, after the outside effects are durable. */
  private async commit(partition: number, task: StageTask, out: Outbox): Promise<void> {
    await this.settings.beforeCommit();
    const point = task.commitPoint();
    if (out.size === 0 && point.offset < 0) return;
    const producer = await this.producerFor(partition);
    const txn = await producer.transaction();
    try {
      for (const [topic, messages] of out.byTopic) for (const chunk of recordChunks(messages)) await txn.send({ topic, messages: chunk, acks: -1 });
      if (point.offset >= 0) {
        await txn.sendOffsets({
          consumerGroupId: this.settings.groupId,
          topics: [{ topic: this.settings.topic, partitions: [{ partition, offset: String(point.offset), metadata: point.metadata } as never] }],
        });
      }
      await txn.commit();
      this.stats.transactions++;
      this.failures.delete(partition);
      if (point.offset >= 0) this.committedPoints.set(partition, point);
    } catch (err) {
      await txn.abort().catch(() => undefined);
      throw new BurstwatchError(`${this.settings.name}: transaction for partition ${partition} failed: ${(err as Error).message}`, {
        cause: err,
        retriable: isRetriableStageError(err),
      });
    }
  }

  /** Whether every partition this member owns has been consumed to its high watermark (markers included). */
  async caughtUp(): Promise<boolean> {
    if (!this.ready) return false;
    const offsets = await this.topicOffsets();
    return offsets.every((o) => !this.assigned.has(o.partition) || Number(o.high) <= Math.max(Number(o.low), this.consumedTo.get(o.partition) ?? 0));
  }

  /** One admin connection per stage, opened on first use (ticks ask for high watermarks every second). */
  private async adminClient(): Promise<Admin> {
    if (!this.admin) {
      const admin = this.kafka.admin();
      this.admin = admin.connect().then(
        () => admin,
        (err: unknown) => {
          this.admin = null;
          throw err;
        },
      );
    }
    return this.admin;
  }

  private async closeAdmin(): Promise<void> {
    const admin = this.admin;
    this.admin = null;
    if (admin) await (await admin.catch(() => null))?.disconnect().catch(() => undefined);
  }

  /** Low and high watermarks of the stage's input topic, per partition. */
  private async topicOffsets(): Promise<{ partition: number; low: string; high: string }[]> {
    return (await this.adminClient()).fetchTopicOffsets(this.settings.topic);
  }

  /**
   * Marks the stage as stopping, at once: no new batch is started, and a batch that fails from
   * now on is left uncommitted (it is read again after the restart) rather than retried or
   * treated as fatal. {@link stop} does this first; call it early when other parts of the
   * service are about to be cut (a sink's retries aborted).
   */
  beginStop(): void {
    this.stopping = true;
  }

  /** Stops fetching, lets the batch in hand finish and commit, and disconnects. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const consumer = this.consumer;
    if (!consumer) {
      await this.closeAdmin();
      return;
    }
    await this.serial(async () => undefined);
    await consumer.stop();
    await consumer.disconnect();
    for (const p of this.producers.values()) await p.disconnect().catch(() => undefined);
    this.producers.clear();
    await this.closeAdmin();
    this.consumer = null;
  }
}

/** Kafka error types retrying cannot fix, whatever kafkajs says. */
const FATAL_KAFKA_TYPES = new Set([
  'TOPIC_AUTHORIZATION_FAILED', 'GROUP_AUTHORIZATION_FAILED', 'CLUSTER_AUTHORIZATION_FAILED', 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED',
  'SASL_AUTHENTICATION_FAILED', 'UNSUPPORTED_SASL_MECHANISM', 'MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD',
]);

/**
 * Whether a failed batch may succeed from its checkpoint later: our own errors say so
 * (`retriable`); kafkajs errors are retried (a broker down or restarting, a fenced
 * transaction after a rebalance) unless their cause is authorization, authentication or a
 * record the broker will never take; anything else is a bug and is not retried.
 */
export function isRetriableStageError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const type = (e as { type?: unknown }).type;
    if (typeof type === 'string' && FATAL_KAFKA_TYPES.has(type)) return false;
    if ((e as { name?: unknown }).name === 'KafkaJSSASLAuthenticationError') return false;
  }
  if (err instanceof BurstwatchError) return err.retriable;
  const name = (err as { name?: unknown })?.name;
  return typeof name === 'string' && name.startsWith('KafkaJS');
}

class Outbox implements StageOutput {
  readonly byTopic = new Map<string, Message[]>();
  size = 0;
  send(topic: string, messages: Message[]): void {
    if (messages.length === 0) return;
    const list = this.byTopic.get(topic);
    if (list) list.push(...messages);
    else this.byTopic.set(topic, [...messages]);
    this.size += messages.length;
  }
}
