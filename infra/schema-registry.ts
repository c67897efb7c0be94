/**
 * A small Confluent-compatible Schema Registry, for local runs and tests only.
 *
 * Why it exists: no schema registry can be installed on the machines this project must run on
 * (no Docker; Confluent's is not on Maven Central as a runnable server and Karapace is not on the
 * reachable PyPI), yet the pipeline decodes Confluent-framed Avro and looks writer schemas up by id.
 * In production, point `schemaRegistryUrl` at a real Confluent Schema Registry, Karapace or
 * Apicurio (ccompat API) instead; nothing in the pipeline depends on this implementation.
 *
 * What it implements (Confluent REST API v1, `application/vnd.schemaregistry.v1+json`): registering
 * and looking up Avro schemas per subject, fetching by global id, listing subjects and versions,
 * global and per-subject compatibility levels (checked with avsc's schema resolution), and the
 * compatibility-test endpoint. Not implemented: deletes, schema references, JSON Schema/Protobuf,
 * modes, contexts, authentication. It is a single instance, not a cluster.
 *
 * Storage follows Confluent's design: every change is a record in the compacted topic `_schemas`,
 * with Confluent's key and value layout, and on start the topic is read from the beginning up to its
 * high watermark to rebuild the state, so ids survive restarts and stay stable.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import avro from 'avsc';
import { Kafka, logLevel, Partitioners, type Consumer, type logCreator, type Producer } from 'kafkajs';
import { ensureTopic } from '../consumers/kafka-client.js';
import { InfraError, errorMessage } from '../errors.js';
import { logger, type Logger } from '../logger.js';
import { LOCAL_HOST, type LocalPorts, type ServiceStatus } from './endpoints.js';
import { packageRoot, packageVersion, serviceDir } from './paths.js';
import {
  assertPortsFree,
  ownedPid,
  readText,
  removeFile,
  spawnDetached,
  stopProcess,
  waitReady,
  watchExit,
  writePidFile,
  type Progress, describeService, resumeRunning, stopService } from './processes.js';

/** Media type of every response, as Confluent sends it. */
export const REGISTRY_CONTENT_TYPE = 'application/vnd.schemaregistry.v1+json';

/** Compatibility levels, with Confluent's names and meaning. Default `BACKWARD`, as in Confluent. */
export type Compatibility =
  | 'NONE'
  | 'BACKWARD'
  | 'BACKWARD_TRANSITIVE'
  | 'FORWARD'
  | 'FORWARD_TRANSITIVE'
  | 'FULL'
  | 'FULL_TRANSITIVE';

const COMPATIBILITY_LEVELS: readonly Compatibility[] = [
  'NONE',
  'BACKWARD',
  'BACKWARD_TRANSITIVE',
  'FORWARD',
  'FORWARD_TRANSITIVE',
  'FULL',
  'FULL_TRANSITIVE',
];

/** Largest request body accepted, bytes. Avro schemas are small; this only stops abuse. */
const MAX_BODY_BYTES = 4 * 1024 * 1024;

/** Options of {@link SchemaRegistryServer}. */
export interface SchemaRegistryOptions {
  /** Kafka bootstrap servers, `host:port`. */
  brokers: string[];
  /** TCP port to listen on; 0 picks a free one. Default 18081. */
  port?: number;
  /** Interface to bind. Default 127.0.0.1 (there is no authentication). */
  host?: string;
  /** Compacted topic that stores the schemas. Default `_schemas`, Confluent's name. */
  topic?: string;
  /** Longest time to read the topic back at start, ms. Default 60000. */
  replayTimeoutMs?: number;
  /** Logger; default the process logger. */
  log?: Logger;
}

interface StoredSchema {
  id: number;
  /** The schema text served for this id (see {@link canonicalAvro}). */
  schema: string;
  type: avro.Type;
}

interface SubjectVersion {
  subject: string;
  version: number;
  id: number;
  deleted: boolean;
}

/** A request failed with a Confluent-style error body `{ error_code, message }`. */
class RestError extends Error {
  constructor(
    readonly status: number,
    readonly errorCode: number,
    message: string,
  ) {
    super(message);
  }
}

const subjectNotFound = (subject: string): RestError => new RestError(404, 40401, `Subject '${subject}' not found.`);
const schemaNotFound = (what = 'Schema not found'): RestError => new RestError(404, 40403, what);
const invalidSchema = (why: string): RestError => new RestError(422, 42201, `Invalid schema: ${why}`);

/** A parsed, validated Avro schema as the registry keeps it. */
export interface ParsedSchema {
  /** The submitted JSON without insignificant whitespace; what `GET /schemas/ids/{id}` returns. */
  text: string;
  /** Identity for id reuse: the JSON with object keys sorted, so key order and layout do not matter. */
  key: string;
  type: avro.Type;
}

/**
 * Validates Avro schema text with avsc (unknown types, bad defaults, duplicate names throw) and
 * returns the forms the registry stores. The served text is the submitted JSON, not avsc's
 * re-serialization, because avsc drops what it does not model (`logicalType` unless registered,
 * custom attributes) and a reader given that schema would decode decimals and timestamps wrongly.
 * Namespace spelling is not normalized, so, as in Confluent without `normalize=true`, `a.B` and
 * `{name: B, namespace: a}` get different ids.
 */
export function canonicalAvro(schemaText: string): ParsedSchema {
  const parsed: unknown = JSON.parse(schemaText);
  const text = JSON.stringify(parsed);
  const key = JSON.stringify(sortKeys(parsed));
  return { text, key, type: avro.Type.forSchema(parsed as avro.Schema) };
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (typeof value !== 'object' || value === null) return value;
  const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Object.fromEntries(entries.map(([k, v]) => [k, sortKeys(v)]));
}

/** Whether data written with `writer` can be read with `reader` (Avro schema resolution). */
function canRead(reader: avro.Type, writer: avro.Type): boolean {
  try {
    reader.createResolver(writer);
    return true;
  } catch {
    return false;
  }
}

/** Whether `candidate` may follow `previous` (oldest first) under `level`. */
export function isCompatible(level: Compatibility, candidate: avro.Type, previous: readonly avro.Type[]): boolean {
  if (level === 'NONE' || previous.length === 0) return true;
  const against = level.endsWith('_TRANSITIVE') ? previous : previous.slice(-1);
  return against.every((old) => {
    if (level.startsWith('BACKWARD')) return canRead(candidate, old);
    if (level.startsWith('FORWARD')) return canRead(old, candidate);
    return canRead(candidate, old) && canRead(old, candidate);
  });
}

/**
 * The registry's state, built only by applying `_schemas` records (at replay and after each write),
 * so what is served always equals what the topic would rebuild after a restart.
 */
class RegistryState {
  readonly schemas = new Map<number, StoredSchema>();
  readonly idByKey = new Map<string, number>();
  readonly subjects = new Map<string, Map<number, SubjectVersion>>();
  readonly subjectCompatibility = new Map<string, Compatibility>();
  globalCompatibility: Compatibility = 'BACKWARD';
  maxId = 0;

  constructor(private readonly log: Logger) {}

  /** Applies one `_schemas` record (Confluent layout). Unknown or unsupported records are skipped. */
  apply(keyBytes: Buffer | null, valueBytes: Buffer | null): void {
    if (keyBytes === null) return;
    let key: Record<string, unknown>;
    let value: Record<string, unknown> | null;
    try {
      key = JSON.parse(keyBytes.toString('utf8')) as Record<string, unknown>;
      value = valueBytes === null ? null : (JSON.parse(valueBytes.toString('utf8')) as Record<string, unknown>);
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'skipping unreadable _schemas record');
      return;
    }
    if (key.keytype === 'SCHEMA') this.applySchema(key, value);
    else if (key.keytype === 'CONFIG') this.applyConfig(key, value);
    // NOOP, DELETE_SUBJECT, CLEAR_SUBJECT, MODE...: nothing this registry keeps.
  }

  private applySchema(key: Record<string, unknown>, value: Record<string, unknown> | null): void {
    const subject = key.subject;
    const version = key.version;
    if (typeof subject !== 'string' || typeof version !== 'number') return;
    if (value === null) {
      // A tombstone is Confluent's permanent delete.
      this.subjects.get(subject)?.delete(version);
      return;
    }
    const { id, schema } = value;
    if (typeof id !== 'number' || typeof schema !== 'string') return;
    if (value.schemaType !== undefined && value.schemaType !== 'AVRO') {
      this.log.warn({ subject, version, schemaType: value.schemaType }, 'skipping non-Avro schema');
      return;
    }
    if (!this.schemas.has(id)) {
      let parsed: ParsedSchema;
      try {
        parsed = canonicalAvro(schema);
      } catch (err) {
        this.log.warn({ subject, version, id, err: errorMessage(err) }, 'skipping unparsable schema');
        return;
      }
      this.schemas.set(id, { id, schema: parsed.text, type: parsed.type });
      if (!this.idByKey.has(parsed.key)) this.idByKey.set(parsed.key, id);
    }
    this.maxId = Math.max(this.maxId, id);
    let versions = this.subjects.get(subject);
    if (versions === undefined) {
      versions = new Map();
      this.subjects.set(subject, versions);
    }
    versions.set(version, { subject, version, id, deleted: value.deleted === true });
  }

  private applyConfig(key: Record<string, unknown>, value: Record<string, unknown> | null): void {
    const level = value?.compatibilityLevel;
    const subject = typeof key.subject === 'string' ? key.subject : undefined;
    if (value === null) {
      if (subject !== undefined) this.subjectCompatibility.delete(subject);
      return;
    }
    if (typeof level !== 'string' || !COMPATIBILITY_LEVELS.includes(level as Compatibility)) return;
    if (subject === undefined) this.globalCompatibility = level as Compatibility;
    else this.subjectCompatibility.set(subject, level as Compatibility);
  }

  /** Live (not soft-deleted) versions of `subject`, oldest first. */
  live(subject: string): SubjectVersion[] {
    return [...(this.subjects.get(subject)?.values() ?? [])]
      .filter((v) => !v.deleted)
      .sort((a, b) => a.version - b.version);
  }

  compatibilityOf(subject: string): Compatibility {
    return this.subjectCompatibility.get(subject) ?? this.globalCompatibility;
  }

  schema(id: number): StoredSchema {
    const stored = this.schemas.get(id);
    if (stored === undefined) throw schemaNotFound(`Schema ${id} not found`);
    return stored;
  }
}

/** Bridges kafkajs's logger to pino, so client warnings land in the same structured log. */
function kafkaLogs(log: Logger): logCreator {
  return () =>
    ({ namespace, level, log: entry }) => {
      const { message, timestamp: _timestamp, ...extra } = entry;
      const fields = { namespace, ...extra };
      // kafkajs logs every error response at ERROR from its Connection layer, including retriable
      // ones it then retries (coordinator loading on a fresh broker); a failure that sticks
      // surfaces again as a thrown error, so these are only warnings.
      if (level === logLevel.ERROR && namespace === 'Connection') log.warn(fields, message);
      else if (level === logLevel.ERROR) log.error(fields, message);
      else if (level === logLevel.WARN) log.warn(fields, message);
      else if (level === logLevel.INFO) log.info(fields, message);
      else log.debug(fields, message);
    };
}

/**
 * The registry HTTP server. `start()` creates the `_schemas` topic if needed (compacted), rebuilds
 * the state from it and then listens; `close()` stops listening and disconnects from Kafka.
 */
export class SchemaRegistryServer {
  private readonly log: Logger;
  private readonly topic: string;
  private readonly state: RegistryState;
  private readonly kafka: Kafka;
  private producer: Producer | undefined;
  private server: Server | undefined;
  /** Registrations and config changes run one at a time, so id and version allocation never race. */
  private writes: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: SchemaRegistryOptions) {
    this.log = (options.log ?? logger).child({ component: 'schema-registry' });
    this.topic = options.topic ?? '_schemas';
    this.state = new RegistryState(this.log);
    this.kafka = new Kafka({
      clientId: 'burstwatch-schema-registry',
      brokers: options.brokers,
      logLevel: logLevel.WARN,
      logCreator: kafkaLogs(this.log),
    });
  }

  /** Base URL once started, e.g. `http://127.0.0.1:18081`. */
  get url(): string {
    const address = this.server?.address() as AddressInfo | null | undefined;
    if (!address) throw new InfraError('schema registry is not listening');
    return `http://${address.address.includes(':') ? `[${address.address}]` : address.address}:${address.port}`;
  }

  /** Number of schemas known (distinct ids). */
  get schemaCount(): number {
    return this.state.schemas.size;
  }

  /** Rebuilds the state from Kafka and starts listening; resolves to the base URL. */
  async start(): Promise<string> {
    try {
      await this.ensureTopic();
      await this.replay();
      // Not idempotent: a retried send can only repeat a record with the same key and value, which
      // applying twice leaves unchanged, and skipping InitProducerId avoids waiting on a coordinator.
      this.producer = this.kafka.producer({
        createPartitioner: Partitioners.DefaultPartitioner,
        allowAutoTopicCreation: false,
      });
      await this.producer.connect();
      const server = createServer((req, res) => void this.handle(req, res));
      this.server = server;
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.options.port ?? 18081, this.options.host ?? LOCAL_HOST, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      await this.close();
      throw err;
    }
    this.log.info({ url: this.url, schemas: this.state.schemas.size, topic: this.topic }, 'schema registry listening');
    return this.url;
  }

  /** Stops listening and disconnects from Kafka. Safe to call twice. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
    await this.writes.catch(() => undefined);
    await this.producer?.disconnect().catch(() => undefined);
    this.producer = undefined;
  }

  private async ensureTopic(): Promise<void> {
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      // Three replicas like Confluent's default when the cluster has them; one on a single broker.
      const replicationFactor = Math.min(3, (await admin.describeCluster()).brokers.length);
      // One partition: the records' order is the registry's history.
      await ensureTopic(admin, { topic: this.topic, partitions: 1, replicationFactor, configs: { 'cleanup.policy': 'compact' } });
    } finally {
      await admin.disconnect();
    }
  }

  /** Reads `_schemas` from the beginning up to the high watermark seen at start. */
  private async replay(): Promise<void> {
    const admin = this.kafka.admin();
    await admin.connect();
    let offsets: { partition: number; high: string; low: string }[];
    try {
      offsets = await admin.fetchTopicOffsets(this.topic);
    } finally {
      await admin.disconnect();
    }
    const pending = new Map<number, bigint>();
    for (const o of offsets) if (BigInt(o.high) > BigInt(o.low)) pending.set(o.partition, BigInt(o.high));
    if (pending.size === 0) return;

    // A throwaway group: kafkajs has no group-less assign(), and autoCommit=false leaves no offsets
    // behind, so the coordinator drops the empty group by itself.
    const consumer: Consumer = this.kafka.consumer({
      groupId: `burstwatch-schema-registry-replay-${randomUUID()}`,
      allowAutoTopicCreation: false,
    });
    const timeoutMs = this.options.replayTimeoutMs ?? 60_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [this.topic], fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new InfraError(`schema registry: reading ${this.topic} back took over ${timeoutMs} ms`, { retriable: true }),
            ),
          timeoutMs,
        );
        consumer
          .run({
            autoCommit: false,
            eachMessage: async ({ partition, message }) => {
              this.state.apply(message.key, message.value);
              const high = pending.get(partition);
              if (high !== undefined && BigInt(message.offset) + 1n >= high) pending.delete(partition);
              if (pending.size === 0) resolve();
            },
          })
          .catch(reject);
      });
    } finally {
      if (timer) clearTimeout(timer);
      await consumer.disconnect().catch(() => undefined);
    }
    this.log.info({ schemas: this.state.schemas.size, subjects: this.state.subjects.size }, 'schemas read back');
  }

  /** Appends a record to `_schemas` (acks=all) and only then applies it to the served state. */
  private async append(key: object, value: object | null): Promise<void> {
    if (!this.producer) throw new RestError(500, 50001, 'Error in the backend data store: not connected');
    const keyText = JSON.stringify(key);
    const valueText = value === null ? null : JSON.stringify(value);
    try {
      await this.producer.send({ topic: this.topic, acks: -1, messages: [{ key: keyText, value: valueText }] });
    } catch (err) {
      throw new RestError(500, 50001, `Error in the backend data store: ${errorMessage(err)}`);
    }
    this.state.apply(Buffer.from(keyText), valueText === null ? null : Buffer.from(valueText));
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.writes.then(fn, fn);
    this.writes = next.catch(() => undefined);
    return next;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = Date.now();
    let status = 200;
    let body: unknown;
    try {
      body = await this.route(req);
    } catch (err) {
      if (err instanceof RestError) {
        status = err.status;
        body = { error_code: err.errorCode, message: err.message };
      } else {
        status = 500;
        body = { error_code: 50001, message: `Internal error: ${errorMessage(err)}` };
        this.log.error({ err: errorMessage(err), url: req.url }, 'registry request failed');
      }
    }
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': REGISTRY_CONTENT_TYPE, 'content-length': Buffer.byteLength(text) });
    res.end(text);
    this.log.debug({ method: req.method, url: req.url, status, ms: Date.now() - started }, 'registry request');
  }

  private async route(req: IncomingMessage): Promise<unknown> {
    const url = new URL(req.url ?? '/', 'http://registry');
    let parts: string[];
    try {
      // Split before decoding, so a subject may contain an encoded '/'.
      parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    } catch {
      throw new RestError(400, 400, 'Malformed URL');
    }
    const method = req.method ?? 'GET';
    const [a, b, c, d, e] = parts;
    const n = parts.length;
    const allow = (...methods: string[]): void => {
      if (!methods.includes(method)) throw new RestError(405, 405, 'HTTP 405 Method Not Allowed');
    };

    if (n === 0) {
      allow('GET');
      return {};
    }
    if (a === 'v1' && b === 'metadata' && c === 'version' && n === 3) {
      allow('GET');
      return { version: registryVersion(), commitId: 'burstwatch' };
    }
    if (a === 'schemas') {
      if (b === 'types' && n === 2) {
        allow('GET');
        return ['AVRO'];
      }
      if (b === 'ids' && c !== undefined && n >= 3 && n <= 4) {
        allow('GET');
        const id = Number(c);
        if (!Number.isInteger(id) || id < 1) throw schemaNotFound(`Schema ${c} not found`);
        const stored = this.state.schema(id);
        if (n === 3) return { schema: stored.schema };
        if (d === 'schema') return JSON.parse(stored.schema) as unknown;
        if (d === 'versions') {
          return [...this.state.subjects.values()]
            .flatMap((versions) => [...versions.values()])
            .filter((v) => v.id === id && !v.deleted)
            .map((v) => ({ subject: v.subject, version: v.version }));
        }
      }
    }
    if (a === 'subjects') {
      if (n === 1) {
        allow('GET');
        return [...this.state.subjects.keys()].filter((s) => this.state.live(s).length > 0).sort();
      }
      const subject = b as string;
      if (n === 2) {
        allow('POST');
        return this.lookup(subject, await readJson(req));
      }
      if (c === 'versions' && n === 3) {
        allow('GET', 'POST');
        if (method === 'POST') return this.register(subject, await readJson(req));
        const live = this.state.live(subject);
        if (live.length === 0) throw subjectNotFound(subject);
        return live.map((v) => v.version);
      }
      if (c === 'versions' && d !== undefined && (n === 4 || (n === 5 && e === 'schema'))) {
        allow('GET');
        const entry = this.version(subject, d);
        const stored = this.state.schema(entry.id);
        if (n === 5) return JSON.parse(stored.schema) as unknown;
        return { subject, version: entry.version, id: entry.id, schema: stored.schema };
      }
    }
    if (a === 'config' && n <= 2) {
      allow('GET', 'PUT');
      if (method === 'PUT') return this.setCompatibility(b, await readJson(req));
      if (b === undefined) return { compatibilityLevel: this.state.globalCompatibility };
      const own = this.state.subjectCompatibility.get(b);
      if (own !== undefined) return { compatibilityLevel: own };
      if (url.searchParams.get('defaultToGlobal') === 'true') {
        return { compatibilityLevel: this.state.globalCompatibility };
      }
      throw new RestError(404, 40408, `Subject '${b}' does not have subject-level compatibility configured`);
    }
    if (a === 'compatibility' && b === 'subjects' && d === 'versions' && e !== undefined && n === 5) {
      allow('POST');
      const subject = c as string;
      const { type } = parseSchemaBody(await readJson(req));
      const against = this.state.schema(this.version(subject, e).id).type;
      const level = this.state.compatibilityOf(subject).replace('_TRANSITIVE', '') as Compatibility;
      return { is_compatible: isCompatible(level, type, [against]) };
    }
    throw new RestError(404, 404, 'HTTP 404 Not Found');
  }

  /** `latest`/`-1` or a version number, resolved among live versions. */
  private version(subject: string, text: string): SubjectVersion {
    const live = this.state.live(subject);
    if (live.length === 0) throw subjectNotFound(subject);
    if (text === 'latest' || text === '-1') return live[live.length - 1] as SubjectVersion;
    const version = Number(text);
    if (!Number.isInteger(version) || version < 1 || version > 2 ** 31 - 1) {
      throw new RestError(
        422,
        42202,
        `The specified version '${text}' is not a valid version id. ` +
          'Allowed values are between [1, 2^31-1] and the string "latest"',
      );
    }
    const entry = live.find((v) => v.version === version);
    if (entry === undefined) throw new RestError(404, 40402, `Version ${version} not found.`);
    return entry;
  }

  private lookup(subject: string, body: unknown): unknown {
    const { key } = parseSchemaBody(body);
    const live = this.state.live(subject);
    if (live.length === 0) throw subjectNotFound(subject);
    const id = this.state.idByKey.get(key);
    const entry = live.find((v) => v.id === id);
    if (entry === undefined) throw schemaNotFound();
    return { subject, version: entry.version, id: entry.id, schema: this.state.schema(entry.id).schema };
  }

  private register(subject: string, body: unknown): Promise<{ id: number }> {
    const { text, key, type } = parseSchemaBody(body);
    return this.serialized(async () => {
      const live = this.state.live(subject);
      const known = this.state.idByKey.get(key);
      // Registering what the subject already has is a no-op that returns the existing id.
      const existing = live.find((v) => v.id === known);
      if (existing !== undefined) return { id: existing.id };
      const level = this.state.compatibilityOf(subject);
      const previous = live.map((v) => this.state.schema(v.id).type);
      if (!isCompatible(level, type, previous)) {
        throw new RestError(
          409,
          409,
          `Schema being registered is incompatible with an earlier schema for subject "${subject}" (compatibility ${level})`,
        );
      }
      // The same schema under another subject keeps its global id, as in Confluent.
      const id = known ?? this.state.maxId + 1;
      // A reused id keeps the text first registered for it.
      const storedText = known === undefined ? text : this.state.schema(known).schema;
      const all = [...(this.state.subjects.get(subject)?.keys() ?? [])];
      const version = all.length === 0 ? 1 : Math.max(...all) + 1; // soft-deleted numbers are not reused
      await this.append(
        { keytype: 'SCHEMA', subject, version, magic: 1 },
        { subject, version, id, schema: storedText, deleted: false },
      );
      this.log.info({ subject, version, id }, 'schema registered');
      return { id };
    });
  }

  private setCompatibility(subject: string | undefined, body: unknown): Promise<{ compatibility: Compatibility }> {
    const level = (body as { compatibility?: unknown } | null)?.compatibility;
    if (typeof level !== 'string' || !COMPATIBILITY_LEVELS.includes(level as Compatibility)) {
      throw new RestError(422, 42203, `Invalid compatibility level. Valid values are: ${COMPATIBILITY_LEVELS.join(', ')}`);
    }
    return this.serialized(async () => {
      await this.append({ keytype: 'CONFIG', subject: subject ?? null, magic: 0 }, { compatibilityLevel: level });
      return { compatibility: level as Compatibility };
    });
  }
}

/** Validates a `{ schema, schemaType?, references? }` request body and parses its schema. */
function parseSchemaBody(body: unknown): ParsedSchema {
  if (typeof body !== 'object' || body === null) throw invalidSchema('request body must be a JSON object');
  const { schema, schemaType, references } = body as Record<string, unknown>;
  if (schemaType !== undefined && schemaType !== 'AVRO') {
    throw invalidSchema(`schemaType ${String(schemaType)} is not supported here; only AVRO is`);
  }
  if (Array.isArray(references) && references.length > 0) throw invalidSchema('schema references are not supported');
  if (typeof schema !== 'string' || schema.trim() === '') throw invalidSchema('"schema" must be a non-empty string');
  try {
    return canonicalAvro(schema);
  } catch (err) {
    throw invalidSchema(errorMessage(err));
  }
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new RestError(413, 413, `Request body over ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new RestError(400, 400, 'Request body is not valid JSON');
  }
}

let cachedVersion: string | undefined;

/** `burstwatch-<package version>`, what `GET /v1/metadata/version` reports. */
function registryVersion(): string {
  if (cachedVersion === undefined) {
    try {
      cachedVersion = `burstwatch-${packageVersion()}`;
    } catch {
      cachedVersion = 'burstwatch'; // embedded without a package root
    }
  }
  return cachedVersion;
}

// --- The registry as a child process of `infra up` --------------------------------------------

/** Default time to wait for a started registry to answer, ms (includes reading `_schemas` back). */
export const REGISTRY_READY_TIMEOUT_MS = 90_000;

/** Files of the registry process under `<stateDir>/registry`. */
export interface RegistryPaths {
  dir: string;
  pidFile: string;
  endpointFile: string;
  /** Its stdout/stderr: pino JSON lines. */
  logFile: string;
}

/** Paths of the registry process's files. */
export function registryPaths(): RegistryPaths {
  const dir = serviceDir('registry');
  return {
    dir,
    pidFile: join(dir, 'registry.pid'),
    endpointFile: join(dir, 'registry.endpoint'),
    logFile: join(dir, 'registry.log'),
  };
}

/**
 * The compiled entry point `<packageRoot>/dist/infra/schema-registry-main.js`. The child runs
 * compiled JS because plain Node 20 cannot run TypeScript and no TS loader is a dependency.
 */
export function registryMainPath(): string {
  return join(packageRoot(), 'dist', 'infra', 'schema-registry-main.js');
}

const markers = (): string[] => [registryMainPath()];

/** The registry's version string if `url` answers within `timeoutMs` (default 2000), else undefined. */
export async function registryVersionAt(url: string, timeoutMs = 2_000): Promise<string | undefined> {
  try {
    const res = await fetch(`${url}/v1/metadata/version`, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return undefined;
    const body = (await res.json()) as { version?: unknown };
    return typeof body.version === 'string' ? body.version : 'unknown';
  } catch {
    return undefined;
  }
}

/** State of the local registry process. */
export async function registryStatus(ports: LocalPorts): Promise<ServiceStatus> {
  const paths = registryPaths();
  const pid = ownedPid(paths.pidFile, markers());
  const wanted = `http://${LOCAL_HOST}:${ports.registry}`;
  const endpoint = (pid !== undefined ? readText(paths.endpointFile) : undefined) ?? wanted;
  const version = pid !== undefined ? await registryVersionAt(endpoint) : undefined;
  return describeService({ name: 'registry', pid, endpoint, ready: version !== undefined, version, logFile: paths.logFile, port: ports.registry });
}

/**
 * Starts the registry as a detached Node process against `brokers` unless it already runs, and
 * waits up to `timeoutMs` (default 90 s) until it answers. Needs the compiled build (`npm run build`).
 */
export async function startRegistry(options: {
  ports: LocalPorts;
  brokers: string[];
  onProgress?: Progress;
  timeoutMs?: number;
}): Promise<ServiceStatus> {
  const { ports } = options;
  const say = options.onProgress ?? (() => undefined);
  const paths = registryPaths();
  const url = `http://${LOCAL_HOST}:${ports.registry}`;
  const current = await registryStatus(ports);
  const resumed = await resumeRunning({
    current,
    wanted: url,
    probe: () => registryVersionAt(url),
    status: () => registryStatus(ports),
    timeoutMs: options.timeoutMs ?? REGISTRY_READY_TIMEOUT_MS,
    logFiles: [paths.logFile],
    onProgress: say,
  });
  if (resumed) return resumed;

  const main = registryMainPath();
  if (!existsSync(main)) {
    throw new InfraError(
      `the schema registry runs from the compiled build, and ${main} is missing; run \`npm run build\` first`,
    );
  }
  warnIfStale(main, say);
  await assertPortsFree([{ port: ports.registry, env: 'BURSTWATCH_REGISTRY_PORT' }], 'registry');
  mkdirSync(paths.dir, { recursive: true });
  say(`registry: starting on ${url} (schemas in Kafka topic _schemas)`);
  const child = spawnDetached(
    process.execPath,
    [main, '--brokers', options.brokers.join(','), '--port', String(ports.registry), '--host', LOCAL_HOST],
    { cwd: paths.dir, logFile: paths.logFile },
  );
  const exited = watchExit(child);
  if (child.pid === undefined) throw new InfraError(`could not start the registry; see ${paths.logFile}`);
  writePidFile(paths.pidFile, child.pid);
  writeFileSync(paths.endpointFile, `${url}\n`);
  try {
    await waitReady({
      what: 'registry',
      probe: () => registryVersionAt(url),
      timeoutMs: options.timeoutMs ?? REGISTRY_READY_TIMEOUT_MS,
      exited,
      logFiles: [paths.logFile],
      onProgress: say,
    });
  } catch (err) {
    await stopProcess(child.pid, markers(), 5_000).catch(() => undefined);
    removeFile(paths.pidFile);
    removeFile(paths.endpointFile);
    throw err;
  }
  return registryStatus(ports);
}

/** Stops the registry process (SIGTERM, SIGKILL after 10 s). Resolves false if it was not running. */
export async function stopRegistry(onProgress?: Progress): Promise<boolean> {
  return stopService('registry', registryPaths(), markers(), onProgress, 10_000);
}

/** A build older than the registry's source would run yesterday's code; say so rather than guess. */
function warnIfStale(main: string, say: Progress): void {
  const source = join(packageRoot(), 'infra', 'schema-registry.ts');
  const built = join(packageRoot(), 'dist', 'infra', 'schema-registry.js');
  try {
    if (existsSync(source) && statSync(source).mtimeMs > statSync(built).mtimeMs) {
      const message = `registry: ${built} is older than ${source}; run \`npm run build\` to pick up changes`;
      say(message);
      logger.warn({ main }, message);
    }
  } catch {
    // no source checkout (installed package): nothing to compare
  }
}
