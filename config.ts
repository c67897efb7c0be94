import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { deadLetterConfigSchema } from './consumers/dead-letter.js';
import { kafkaConfigSchema } from './consumers/kafka-client.js';
import { topologyConfigSchema } from './consumers/topology.js';
import { windowConfigSchema } from './consumers/windows.js';
import { entityScorerSchema } from './detectors/entity-scorer.js';
import { ConfigError } from './errors.js';
import { ruleLifecycleSchema } from './rules/lifecycle.js';
import { WIRE_ENCODINGS } from './schemas/codec.js';
import { clickhouseConfigSchema } from './sinks/clickhouse.js';
import { edgeRulesConfigSchema } from './sinks/edge-rules.js';

/** Where request logs come from and how they are decoded. */
export const inputConfigSchema = z
  .object({
    /** Topic of request logs. Default `request-logs`. */
    topic: z.string().min(1).default('request-logs'),
    /** Consumer group id; members of one group share the partitions. Default `burstwatch`. */
    group_id: z.string().min(1).default('burstwatch'),
    /** With no committed offset, start at the earliest record (true) or only new ones. Default true. */
    from_beginning: z.boolean().default(true),
    /** Encodings accepted (CONTRACTS §1). Default all three. */
    encodings: z.array(z.enum(WIRE_ENCODINGS as [string, ...string[]])).min(1).default([...WIRE_ENCODINGS]),
    /** `.avsc` file of the writer schema of plain-Avro messages. Default: ours. */
    plain_writer_schema: z.string().optional(),
    /** Further `.avsc` files that single-object messages may name by fingerprint. */
    known_writer_schemas: z.array(z.string()).default([]),
    /** Confluent-compatible schema registry for Confluent-framed messages. */
    schema_registry: z
      .object({ url: z.string().url(), basic_auth_file: z.string().optional(), timeout_ms: z.number().int().positive().default(5_000) })
      .strict()
      .optional(),
    /**
     * Live mode: records whose event time is further than this ahead of the wall clock are
     * dead-lettered (`future_timestamp`), so one bad clock cannot push the watermark past every
     * open window. ms. Default 300 000.
     */
    max_future_ms: z.number().int().positive().default(300_000),
    /** Largest message accepted per partition fetch, bytes. Default 10 MiB. */
    max_bytes_per_partition: z.number().int().positive().default(10 * 1024 * 1024),
    /**
     * Consumer session timeout of the three stages' groups, ms: how long the group waits for a
     * member that stopped heartbeating (`kill -9`, a lost machine) before its partitions move,
     * and so the floor of the recovery time (docs/operations.md). Heartbeats go on while a
     * batch waits on a sink. Default 30 000 (kafkajs').
     */
    session_timeout_ms: z.number().int().min(6_000).default(30_000),
  })
  .strict();

/** Prometheus endpoint. */
export const metricsConfigSchema = z
  .object({
    /** Port of `/metrics`, `/healthz` and `/readyz`; 0 disables. Default 9464. */
    port: z.number().int().min(0).max(65535).default(9464),
    /** Interface to listen on. Default 127.0.0.1. */
    host: z.string().default('127.0.0.1'),
  })
  .strict();

/** The whole configuration of burstwatch: one object, validated before anything starts. */
export const configSchema = z
  .object({
    kafka: kafkaConfigSchema.prefault({}),
    input: inputConfigSchema.prefault({}),
    dead_letter: deadLetterConfigSchema.prefault({}),
    windows: windowConfigSchema.prefault({}),
    topology: topologyConfigSchema.prefault({}),
    scorer: entityScorerSchema.prefault({}),
    rules: ruleLifecycleSchema.prefault({}),
    edge_rules: edgeRulesConfigSchema.prefault({}),
    clickhouse: clickhouseConfigSchema.prefault({}),
    metrics: metricsConfigSchema.prefault({}),
  })
  .strict();

/** Validated configuration. */
export type Config = z.infer<typeof configSchema>;

/** The keys accepted at `path` of the config (for error messages), or null if not an object there. */
export function knownKeys(path: readonly string[]): string[] | null {
  let node: z.core.$ZodType = configSchema;
  const unwrap = (t: z.core.$ZodType): z.core.$ZodType => {
    let cur = t;
    // Defaults, prefaults, optionals and refinements wrap the object schema.
    for (let i = 0; i < 8; i++) {
      const def = cur._zod.def as { innerType?: z.core.$ZodType; in?: z.core.$ZodType };
      const inner = def.innerType ?? def.in;
      if (!inner) break;
      cur = inner;
    }
    return cur;
  };
  for (const key of [...path, null]) {
    node = unwrap(node);
    const shape = (node._zod.def as { shape?: Record<string, z.core.$ZodType> }).shape;
    if (!shape) return null;
    if (key === null) return Object.keys(shape);
    const next = shape[key];
    if (!next) return null;
    node = next;
  }
  return null;
}

/** Turns the first zod issue into an error naming the dotted key and what is accepted. */
function toConfigError(error: z.ZodError): ConfigError {
  const issue = error.issues[0] as z.core.$ZodIssue;
  const path = issue.path.map(String);
  if (issue.code === 'unrecognized_keys') {
    const keys = (issue as { keys: string[] }).keys;
    const known = knownKeys(path);
    return new ConfigError([...path, keys[0] ?? '?'].join('.'), `unknown key${known ? `; accepted here: ${known.join(', ')}` : ''}`);
  }
  return new ConfigError(path.join('.') || '(root)', issue.message);
}

/** Validates a raw object. Throws {@link ConfigError} naming the bad key. */
export function parseConfig(raw: unknown): Config {
  const res = configSchema.safeParse(raw);
  if (!res.success) throw toConfigError(res.error);
  return res.data;
}

/**
 * Applies environment overrides: `BURSTWATCH__SECTION__KEY=value` sets `section.key`. Values
 * are parsed as JSON when they can be (numbers, booleans, arrays), else taken as strings; a
 * comma-separated string becomes an array.
 */
export function applyEnv(raw: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
  const out = structuredClone(raw);
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('BURSTWATCH__') || value === undefined) continue;
    const path = name.slice('BURSTWATCH__'.length).toLowerCase().split('__');
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch {
      parsed = value.includes(',') ? value.split(',').map((s) => s.trim()) : value;
    }
    let node: Record<string, unknown> = out;
    for (const key of path.slice(0, -1)) {
      if (typeof node[key] !== 'object' || node[key] === null) node[key] = {};
      node = node[key] as Record<string, unknown>;
    }
    node[path.at(-1) as string] = parsed;
  }
  return out;
}

/** Loads a JSON config file (if given), applies environment overrides, validates. */
export function loadConfig(file?: string, overrides: Record<string, unknown> = {}): Config {
  let raw: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError('--config', `cannot read ${file}: ${(err as Error).message}`);
    }
    try {
      raw = JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError('--config', `${file} is not valid JSON: ${(err as Error).message}`);
    }
  }
  return parseConfig(deepMerge(applyEnv(raw), overrides));
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && cur && typeof cur === 'object' && !Array.isArray(cur)
        ? deepMerge(cur as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}
