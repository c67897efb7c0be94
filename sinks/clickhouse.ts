import { readFileSync } from 'node:fs';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import type { WindowAggregateRow } from '../consumers/aggregates.js';
import type { Verdict } from '../detectors/verdict.js';
import { SinkError, withRetry } from '../errors.js';
import { logger } from '../logger.js';
import type { RuleChange } from '../rules/lifecycle.js';
import type { PipelineSink } from './sink.js';

/** ClickHouse sink settings. Keys follow the client's and the server's names. */
export const clickhouseConfigSchema = z
  .object({
    /** HTTP(S) endpoint. Default the local server of `burstwatch infra`. */
    url: z.string().url().default('http://127.0.0.1:18123'),
    /** User. Default `default`. */
    username: z.string().default('default'),
    /** Password; prefer `password_file` or BURSTWATCH_CLICKHOUSE_PASSWORD. Default empty. */
    password: z.string().optional(),
    password_file: z.string().optional(),
    /** Database for the tables; created if missing. Default `burstwatch`. */
    database: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { message: 'must be a plain identifier' }).default('burstwatch'),
    /** Rows buffered per table before an insert is sent, rows. Default 5 000. */
    batch_rows: z.number().int().positive().default(5_000),
    /** Request timeout, ms. Default 30 000. */
    request_timeout_ms: z.number().int().positive().default(30_000),
    /**
     * Retries of a retriable error (connection refused or reset, timeouts, server overload)
     * before the pipeline stops, with full-jitter exponential backoff. Default null: an outage
     * is waited out however long it lasts, with consumption paused (backpressure), /readyz
     * answering 503 and `burstwatch_sink_healthy{sink="clickhouse"}` at 0. A number makes a
     * long outage stop the service instead. Errors that retrying cannot fix (bad SQL, bad
     * credentials) stop it at once.
     */
    max_retries: z.number().int().nonnegative().nullable().default(null),
    /** Longest wait between two retries, ms. Default 10 000 (a restarted server is used again within about that). */
    max_retry_delay_ms: z.number().int().positive().default(10_000),
    /**
     * TLS for an `https://` url: `ca_file` (PEM) to trust a private CA, and `cert_file` with
     * `key_file` for mutual TLS. Default none (the system's CAs for https).
     */
    tls: z
      .object({ ca_file: z.string(), cert_file: z.string().optional(), key_file: z.string().optional() })
      .strict()
      .refine((t) => (t.cert_file === undefined) === (t.key_file === undefined), { message: 'cert_file and key_file go together' })
      .optional(),
    /** Drop rows older than this many days (needs ClickHouse ≥ 20.1 for TTL; ignored with a warning before). Default: keep. */
    retention_days: z.number().int().positive().optional(),
  })
  .strict();

/** Validated ClickHouse settings. */
export type ClickHouseSettings = z.infer<typeof clickhouseConfigSchema>;

/** Server capabilities that change the DDL. */
export interface ServerFeatures {
  version: string;
  /** LowCardinality(String) without the experimental flag (19.x GA; we require ≥ 20.1 to be safe). */
  lowCardinality: boolean;
  /** Table TTL (19.6+; ≥ 20.1 here). */
  ttl: boolean;
}

/** Parses `SELECT version()` output into the features the DDL may use. */
export function featuresOf(version: string): ServerFeatures {
  const [major = 0, minor = 0] = version.split('.').map((p) => Number.parseInt(p, 10));
  const modern = major > 20 || (major === 20 && minor >= 1);
  return { version, lowCardinality: modern, ttl: modern };
}

type Column = [name: string, type: string];

/**
 * One detector's score as its own column, computed by the server from the detector arrays at
 * insert, and on read for parts written before the column existed (so a migrated table shows it
 * for old rows too). NULL when that detector did not look at the window (population below its
 * minimum requests, shift when the volume was calm).
 */
const detectorScore = (name: string): string =>
  `Nullable(Float64) MATERIALIZED if(has(detector_names, '${name}'), detector_scores[indexOf(detector_names, '${name}')], NULL)`;

/** Table definitions: columns are the contract for analysts (docs/analysts.md). `LC` becomes LowCardinality(String) where supported. */
export const TABLES: Record<'verdicts' | 'window_aggregates' | 'rule_events', { columns: Column[]; orderBy: string; partitionBy: string; ttlColumn: string }> = {
  verdicts: {
    columns: [
      ['verdict_id', 'String'],
      ['entity_type', 'LC'],
      ['entity', 'String'],
      ['window_start', "DateTime('UTC')"],
      ['window_end', "DateTime('UTC')"],
      ['score', 'Float64'],
      ['anomalous', 'UInt8'],
      ['detector_names', 'Array(String)'],
      ['detector_scores', 'Array(Float64)'],
      // Per-detector scores an analyst filters on (`WHERE population_score > 0.9`); the arrays stay the source of truth.
      ['volume_score', detectorScore('volume')],
      ['onset_score', detectorScore('onset')],
      ['population_score', detectorScore('population')],
      ['shift_score', detectorScore('shift')],
      ['reasons', 'Array(String)'],
      ['feature_names', 'Array(String)'],
      ['feature_values', 'Array(Float64)'],
      ['typical_names', 'Array(String)'],
      ['typical_values', 'Array(Float64)'],
      ['requests', 'UInt64'],
      ['model_version', 'LC'],
      ['pipeline_version', 'LC'],
      ['inserted_at', "DateTime('UTC') DEFAULT now()"],
    ],
    orderBy: 'entity_type, entity, window_start, window_end',
    partitionBy: 'toYYYYMM(window_start)',
    ttlColumn: 'window_start',
  },
  window_aggregates: {
    columns: [
      ['entity_type', 'LC'],
      ['entity', 'String'],
      ['window_start', "DateTime('UTC')"],
      ['window_end', "DateTime('UTC')"],
      ['requests', 'UInt64'],
      ['unique_ips', 'UInt64'],
      ['unique_paths', 'UInt64'],
      ['unique_user_agents', 'UInt64'],
      ['unique_ja4s', 'UInt64'],
      ['unique_asns', 'UInt64'],
      ['status_2xx', 'UInt64'],
      ['status_3xx', 'UInt64'],
      ['status_4xx', 'UInt64'],
      ['status_5xx', 'UInt64'],
      ['status_401', 'UInt64'],
      ['status_403', 'UInt64'],
      ['post_requests', 'UInt64'],
      ['static_requests', 'UInt64'],
      ['response_bytes', 'UInt64'],
      ['challenge_issued', 'UInt64'],
      ['challenge_passed', 'UInt64'],
      ['challenge_failed', 'UInt64'],
      ['http1_requests', 'UInt64'],
      ['http2_requests', 'UInt64'],
      ['http3_requests', 'UInt64'],
      ['requests_per_ip_mean', 'Float64'],
      ['requests_per_ip_max', 'UInt64'],
      ['top_paths', 'Array(String)'],
      ['top_path_requests', 'Array(UInt64)'],
      ['requests_last_slide', 'UInt64'],
      ['inserted_at', "DateTime('UTC') DEFAULT now()"],
    ],
    orderBy: 'entity_type, entity, window_start, window_end',
    partitionBy: 'toYYYYMM(window_start)',
    ttlColumn: 'window_start',
  },
  rule_events: {
    columns: [
      ['rule_id', 'String'],
      ['op', 'LC'],
      ['event_time', "DateTime('UTC')"],
      ['match_asn', 'UInt32'],
      ['match_ja4', 'String'],
      ['match_json', 'String'],
      ['action', 'LC'],
      ['mode', 'LC'],
      ['created_at', "DateTime('UTC')"],
      ['updated_at', "DateTime('UTC')"],
      ['expires_at', "DateTime('UTC')"],
      ['score', 'Float64'],
      ['reason', 'String'],
      // Why a delete happened (`expired`, …); empty for upserts.
      ['why', 'LC'],
      // Requests per second per client of a `rate_limit` rule; 0 for other actions.
      ['rate_limit_rps', 'Float64'],
      ['verdict_id', 'String'],
      ['entity_type', 'LC'],
      ['entity', 'String'],
      ['inserted_at', "DateTime('UTC') DEFAULT now()"],
    ],
    orderBy: 'rule_id, event_time, op',
    partitionBy: 'toYYYYMM(event_time)',
    ttlColumn: 'event_time',
  },
};

/** CREATE TABLE for one table on a server with `features`. Names are constants, never input. */
export function createTableSql(database: string, table: keyof typeof TABLES, features: ServerFeatures, retentionDays?: number): string {
  const t = TABLES[table];
  const cols = t.columns.map(([n, ty]) => `  ${n} ${columnType(ty, features)}`).join(',\n');
  const ttl = retentionDays && features.ttl ? `\nTTL ${t.ttlColumn} + INTERVAL ${retentionDays} DAY` : '';
  // ReplacingMergeTree keyed by the natural key: a row written twice (replay, retry) collapses
  // to one on merge, and at once under FINAL. The newest insert wins.
  return (
    `CREATE TABLE IF NOT EXISTS ${database}.${table} (\n${cols}\n) ENGINE = ReplacingMergeTree(inserted_at)\n` +
    `PARTITION BY ${t.partitionBy}\nORDER BY (${t.orderBy})${ttl}`
  );
}

function columnType(ty: string, f: ServerFeatures): string {
  if (ty === 'LC') return f.lowCardinality ? 'LowCardinality(String)' : 'String';
  return ty;
}

/** ClickHouse error codes worth retrying: overload, timeouts, network, read-only replicas, too many parts. */
const RETRIABLE_CODES = new Set(['159', '164', '202', '209', '210', '241', '242', '252', '319', '425', '999', '1000']);

/** Whether a ClickHouse client error may succeed if retried (Vector's ClickHouse sink classifies the same way). */
export function isRetriableClickHouseError(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  if (e?.code && RETRIABLE_CODES.has(String(e.code))) return true;
  const msg = String(e?.message ?? '');
  return /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|socket hang up|Timeout error|network|EHOSTUNREACH/i.test(msg) || (e?.code ? ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE'].includes(e.code) : false);
}

const sec = (ms: number): number => Math.floor(ms / 1000);
const finite = (v: number | undefined): number => (v !== undefined && Number.isFinite(v) ? v : 0);

/** Verdict → `verdicts` row. */
export function verdictRow(v: Verdict): Record<string, unknown> {
  const detectorNames = Object.keys(v.detectors);
  const featureNames = Object.keys(v.features);
  const typicalNames = Object.keys(v.typical).filter((n) => Number.isFinite(v.typical[n]));
  return {
    verdict_id: v.verdict_id,
    entity_type: v.entity_type,
    entity: v.entity,
    window_start: sec(v.window_start),
    window_end: sec(v.window_end),
    score: v.score,
    anomalous: v.anomalous ? 1 : 0,
    detector_names: detectorNames,
    detector_scores: detectorNames.map((n) => finite(v.detectors[n])),
    reasons: v.reasons,
    feature_names: featureNames,
    feature_values: featureNames.map((n) => finite(v.features[n])),
    typical_names: typicalNames,
    typical_values: typicalNames.map((n) => finite(v.typical[n])),
    requests: v.requests,
    model_version: v.model_version,
    pipeline_version: v.pipeline_version,
  };
}

/** Window aggregate → `window_aggregates` row. */
export function aggregateRow(r: WindowAggregateRow): Record<string, unknown> {
  return { ...r, window_start: sec(r.window_start), window_end: sec(r.window_end) };
}

/** Rule change → `rule_events` row. */
export function ruleEventRow(c: RuleChange): Record<string, unknown> {
  const r = c.rule;
  return {
    rule_id: r.rule_id,
    op: c.op,
    event_time: sec(c.at),
    match_asn: r.match.asn ?? 0,
    match_ja4: r.match.ja4 ?? '',
    match_json: JSON.stringify(r.match),
    action: r.action,
    mode: r.mode,
    created_at: sec(r.created_at),
    updated_at: sec(r.updated_at),
    expires_at: sec(r.expires_at),
    score: r.score,
    reason: r.reason,
    why: c.op === 'delete' ? c.why : '',
    rate_limit_rps: r.rate_limit_rps ?? 0,
    verdict_id: r.verdict_id ?? '',
    entity_type: r.entity_type ?? '',
    entity: r.entity ?? '',
  };
}

/**
 * Writes verdicts (every scored window), window aggregates and rule events to ClickHouse.
 * Creates or migrates the tables at connect. Rows are buffered per table and inserted as
 * JSONEachRow bodies, so no SQL is ever built from log values; inserts retry only retriable
 * errors with jittered backoff, and the awaiting pipeline stops consuming meanwhile.
 */
export class ClickHouseSink implements PipelineSink {
  readonly name = 'clickhouse';
  readonly client: ClickHouseClient;
  private readonly buffers: Record<keyof typeof TABLES, Record<string, unknown>[]> = { verdicts: [], window_aggregates: [], rule_events: [] };
  features: ServerFeatures | null = null;
  /** Rows inserted per table, and retries (metrics). */
  readonly stats = { inserted: { verdicts: 0, window_aggregates: 0, rule_events: 0 }, retries: 0 };
  /** Called after each insert attempt that succeeded, with its duration (metrics: batch latency). */
  onBatch: ((table: string, rows: number, seconds: number) => void) | null = null;
  /** Since when (epoch ms) operations have been failing; null while healthy. */
  private failingSince: number | null = null;
  /** Aborted when the service stops: retries stop waiting, in-flight requests are cancelled. */
  private readonly stopRetries = new AbortController();
  private readonly stopRequests = new AbortController();

  constructor(private readonly settings: ClickHouseSettings) {
    const password =
      process.env.BURSTWATCH_CLICKHOUSE_PASSWORD ??
      (settings.password_file ? readFileSync(settings.password_file, 'utf8').trim() : settings.password) ??
      '';
    this.client = createClient({
      url: settings.url,
      username: settings.username,
      password,
      request_timeout: settings.request_timeout_ms,
      ...(settings.tls
        ? {
            tls: {
              ca_cert: readFileSync(settings.tls.ca_file),
              ...(settings.tls.cert_file && settings.tls.key_file ? { cert: readFileSync(settings.tls.cert_file), key: readFileSync(settings.tls.key_file) } : {}),
            } as { ca_cert: Buffer; cert: Buffer; key: Buffer },
          }
        : {}),
      // 18.16 rejects settings it does not know; send none by default.
      clickhouse_settings: {},
    });
  }

  /** The database the tables live in. */
  get database(): string {
    return this.settings.database;
  }

  async connect(): Promise<void> {
    const version = await this.retry('version', async () => {
      const rs = await this.client.query({ query: 'SELECT version() AS v', format: 'JSONEachRow' });
      return ((await rs.json()) as { v: string }[])[0]?.v ?? '0';
    });
    this.features = featuresOf(version);
    if (this.settings.retention_days && !this.features.ttl) {
      logger.warn({ version, key: 'clickhouse.retention_days' }, 'this ClickHouse has no table TTL; retention_days is ignored');
    }
    const db = this.settings.database;
    await this.client.command({ query: `CREATE DATABASE IF NOT EXISTS ${db}` });
    for (const table of Object.keys(TABLES) as (keyof typeof TABLES)[]) {
      await this.client.command({ query: createTableSql(db, table, this.features, this.settings.retention_days) });
      await this.migrate(table);
    }
    logger.info({ clickhouse: this.settings.url, version, database: db }, 'clickhouse tables ready');
  }

  /** Adds columns that a newer burstwatch defines and an older table lacks. */
  private async migrate(table: keyof typeof TABLES): Promise<void> {
    const rs = await this.client.query({
      query: `SELECT name FROM system.columns WHERE database = '${this.settings.database}' AND table = '${table}'`,
      format: 'JSONEachRow',
    });
    const have = new Set(((await rs.json()) as { name: string }[]).map((r) => r.name));
    let after = '';
    for (const [name, ty] of TABLES[table].columns) {
      if (!have.has(name)) {
        const features = this.features as ServerFeatures;
        // 18.16 keeps MATERIALIZED columns in a list of their own: AFTER neither places one nor
        // names one ("Cannot find column … to insert after"); their place does not matter.
        const position = after && !/ MATERIALIZED /.test(ty) ? ` AFTER ${after}` : '';
        await this.client.command({
          query: `ALTER TABLE ${this.settings.database}.${table} ADD COLUMN ${name} ${columnType(ty, features)}${position}`,
        });
        logger.info({ table, column: name }, 'clickhouse column added');
      }
      if (!/ MATERIALIZED /.test(ty)) after = name;
    }
  }

  async writeAggregates(rows: readonly WindowAggregateRow[]): Promise<void> {
    for (const r of rows) this.buffers.window_aggregates.push(aggregateRow(r));
    await this.flushFull();
  }

  async writeVerdicts(verdicts: readonly Verdict[]): Promise<void> {
    for (const v of verdicts) this.buffers.verdicts.push(verdictRow(v));
    await this.flushFull();
  }

  async writeRuleChanges(changes: readonly RuleChange[]): Promise<void> {
    for (const c of changes) this.buffers.rule_events.push(ruleEventRow(c));
    await this.flushFull();
  }

  private async flushFull(): Promise<void> {
    for (const table of Object.keys(this.buffers) as (keyof typeof TABLES)[]) {
      if (this.buffers[table].length >= this.settings.batch_rows) await this.insert(table);
    }
  }

  async flush(): Promise<void> {
    for (const table of Object.keys(this.buffers) as (keyof typeof TABLES)[]) await this.insert(table);
  }

  /**
   * Inserts what `table`'s buffer holds now. Inserts of a table are chained, so when this
   * resolves every row buffered before the call is durable, even if another stage's flush took
   * it; rows buffered while an insert is under way wait for the next one. A failed insert puts
   * its rows back at the head of the buffer.
   */
  private insert(table: keyof typeof TABLES): Promise<void> {
    const run = async (): Promise<void> => {
      const rows = this.buffers[table];
      if (rows.length === 0) return;
      this.buffers[table] = [];
      try {
        await this.retry(`insert ${table}`, async () => {
          const t0 = performance.now();
          await this.client.insert({ table: `${this.settings.database}.${table}`, values: rows, format: 'JSONEachRow', abort_signal: this.stopRequests.signal });
          this.onBatch?.(table, rows.length, (performance.now() - t0) / 1000);
        });
      } catch (err) {
        this.buffers[table] = rows.concat(this.buffers[table]);
        throw err;
      }
      this.stats.inserted[table] += rows.length;
    };
    const p = this.inflight[table].then(run, run);
    this.inflight[table] = p.catch(() => undefined);
    return p;
  }

  private readonly inflight: Record<keyof typeof TABLES, Promise<void>> = {
    verdicts: Promise.resolve(),
    window_aggregates: Promise.resolve(),
    rule_events: Promise.resolve(),
  };

  /** False while ClickHouse operations are failing and being retried (an outage): /readyz, metrics. */
  get healthy(): boolean {
    return this.failingSince === null;
  }

  /** Rows buffered and not yet durable, per table (bounded: the stages wait on the inserts). */
  get bufferedRows(): number {
    return this.buffers.verdicts.length + this.buffers.window_aggregates.length + this.buffers.rule_events.length;
  }

  private async retry<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const result = await withRetry(
      async () => {
        try {
          return await fn();
        } catch (err) {
          this.failingSince ??= Date.now();
          const stopped = this.stopRetries.signal.aborted;
          throw new SinkError(`clickhouse ${what} failed${stopped ? ' while stopping' : ''}: ${(err as Error).message}`, {
            retriable: !stopped && isRetriableClickHouseError(err),
            cause: err,
          });
        }
      },
      {
        retries: this.settings.max_retries ?? Number.POSITIVE_INFINITY,
        initialDelayMs: 250,
        maxDelayMs: this.settings.max_retry_delay_ms,
        signal: this.stopRetries.signal,
        onRetry: (err, attempt, delayMs) => {
          this.stats.retries++;
          const down = this.failingSince === null ? 0 : Date.now() - this.failingSince;
          logger.warn({ err: (err as Error).message, attempt, delayMs, failingForMs: down }, `clickhouse ${what}: retrying; consumption waits`);
        },
      },
    );
    if (this.failingSince !== null) {
      logger.info({ outageMs: Date.now() - this.failingSince }, 'clickhouse reachable again; consumption resumes');
      this.failingSince = null;
    }
    return result;
  }

  /**
   * The service is stopping: a failing operation is no longer retried (its batch is not
   * committed, so its input is read again after the restart: nothing is lost), and after
   * `cancelAfterMs` the requests still in flight are cancelled too.
   */
  stopRetrying(cancelAfterMs = 5_000): void {
    this.stopRetries.abort();
    setTimeout(() => this.stopRequests.abort(), cancelAfterMs).unref();
  }

  async close(): Promise<void> {
    try {
      // During an outage there is nothing to wait for: the rows are in no committed batch.
      if (this.healthy) await this.flush();
    } finally {
      await this.client.close();
    }
  }
}
