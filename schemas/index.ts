import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import avro from 'avsc';

/** Finds a file of `schemas/` both from source (`schemas/*.ts`) and from `dist/schemas/*.js`. */
export function schemaPath(file: string): string {
  for (const rel of [`./${file}`, `../../schemas/${file}`]) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  throw new Error(`schema file ${file} not found beside ${import.meta.url}`);
}

/** Parses an `.avsc` file into an avsc Type (logical types stay as their underlying `long`). */
export function loadSchema(file: string): avro.Type {
  return avro.Type.forSchema(JSON.parse(readFileSync(schemaPath(file), 'utf8')) as avro.Schema);
}

/** Outcome of a challenge on a request (CONTRACTS §1). */
export type ChallengeOutcome = 'NONE' | 'ISSUED' | 'PASSED' | 'FAILED';

/** One HTTP request log, field for field the reader schema `request-log.avsc`. */
export interface RequestLog {
  /** Event time, epoch ms. */
  timestamp: number;
  request_id: string;
  client_ip: string;
  asn: number;
  country: string;
  ja4: string | null;
  user_agent: string;
  method: string;
  host: string;
  path: string;
  status: number;
  response_bytes: number;
  protocol: string;
  challenge: ChallengeOutcome;
}

/** Rule actions an edge node understands (CONTRACTS §4). */
export type RuleAction = 'challenge' | 'block' | 'rate_limit' | 'log';
/** `shadow` rules are evaluated and logged at the edge but not enforced. */
export type RuleMode = 'enforce' | 'shadow';

/** Equality constraints over request-log fields; unset fields are unconstrained. */
export interface RuleMatch {
  asn?: number;
  ja4?: string;
  country?: string;
  host?: string;
  client_ip?: string;
  user_agent?: string;
}

/** An edge rule as the application sees it (the Avro record has nulls for unset match keys). */
export interface EdgeRule {
  rule_id: string;
  match: RuleMatch;
  action: RuleAction;
  mode: RuleMode;
  /** Epoch ms, event time. */
  created_at: number;
  updated_at: number;
  expires_at: number;
  score: number;
  reason: string;
  rate_limit_rps: number | null;
  verdict_id: string | null;
  entity_type: string | null;
  entity: string | null;
}

/** The reader schema for request logs. */
export const requestLogType: avro.Type = loadSchema('request-log.avsc');
/** The schema of edge-rule values. */
export const edgeRuleType: avro.Type = loadSchema('edge-rule.avsc');

const MATCH_KEYS = ['asn', 'ja4', 'country', 'host', 'client_ip', 'user_agent'] as const;

/** Converts an application rule to the Avro value (null for every unconstrained match key). */
export function edgeRuleToAvro(rule: EdgeRule): Record<string, unknown> {
  const match: Record<string, unknown> = {};
  for (const k of MATCH_KEYS) match[k] = rule.match[k] ?? null;
  return { ...rule, match };
}

/** Converts a decoded Avro edge rule back, dropping null match keys. */
export function edgeRuleFromAvro(value: Record<string, unknown>): EdgeRule {
  const raw = value.match as Record<string, unknown>;
  const match: Record<string, unknown> = {};
  for (const k of MATCH_KEYS) if (raw[k] !== null && raw[k] !== undefined) match[k] = raw[k];
  return { ...(value as unknown as EdgeRule), match: match as RuleMatch };
}
