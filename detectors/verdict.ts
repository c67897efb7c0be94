import { createHash } from 'node:crypto';
import { splitPair, type EntityType } from '../consumers/aggregates.js';

/** One scored (entity, window): CONTRACTS §3. */
export interface Verdict {
  /** Deterministic: the same entity and window always give the same id, so sinks can deduplicate. */
  verdict_id: string;
  entity_type: EntityType;
  entity: string;
  /**
   * The request-log fields the entity stands for ({@link scopeOf}): what a rule made from this
   * verdict matches. An asn_ja4 verdict names both, the narrowest scope; asn or ja4 one field.
   */
  scope: Scope;
  /** Epoch ms. */
  window_start: number;
  /** Epoch ms. */
  window_end: number;
  /** In [0, 1]; higher is more anomalous. */
  score: number;
  /** The decision of the policy. */
  anomalous: boolean;
  /** Score of each detector that looked at this window, in [0, 1]. */
  detectors: Record<string, number>;
  /** Which features departed from what was typical, and by how much, in words. */
  reasons: string[];
  /** The feature values the detectors saw in this window. */
  features: Record<string, number>;
  /** The typical value of each feature (median of the entity's own history). */
  typical: Record<string, number>;
  /** Requests of the entity in the window. */
  requests: number;
  /** Which model and settings produced the score. */
  model_version: string;
  /** Version of burstwatch that produced the verdict. */
  pipeline_version: string;
}

/** Equality constraints on request-log fields (CONTRACTS §4 `match`), as far as an entity sets them. */
export interface Scope {
  asn?: number;
  ja4?: string;
}

/** The scope of an entity: the most specific equality constraints it stands for. */
export function scopeOf(entityType: EntityType, entity: string): Scope {
  if (entityType === 'asn') return { asn: Number(entity) };
  if (entityType === 'ja4') return { ja4: entity };
  const [asn, ja4] = splitPair(entity);
  return { asn: Number(asn), ja4 };
}

/** sha256 of the entity and window, 32 hex digits. */
export function verdictId(entityType: EntityType, entity: string, windowStart: number, windowEnd: number): string {
  return createHash('sha256').update(`${entityType}\u0000${entity}\u0000${windowStart}\u0000${windowEnd}`).digest('hex').slice(0, 32);
}
