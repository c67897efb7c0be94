import type { WindowAggregateRow } from '../consumers/aggregates.js';
import type { Verdict } from '../detectors/verdict.js';
import type { RuleChange } from '../rules/lifecycle.js';

/**
 * What the pipeline hands to its outputs (after Benthos: connect, write a batch, close).
 * A sink may buffer; after `flush()` resolves, everything written before it is durable, and
 * only then are input offsets committed. Writes of the same item twice must be harmless
 * (idempotent sinks), because replays and retries repeat them.
 */
export interface PipelineSink {
  /** Short name for logs and metrics. */
  readonly name: string;
  /** Connects and creates or migrates what the sink needs (tables, topics). */
  connect(): Promise<void>;
  /** Aggregates of closed windows, one row per entity. */
  writeAggregates?(rows: readonly WindowAggregateRow[]): Promise<void>;
  /** Verdicts: every scored window; a sink may keep only anomalous ones. */
  writeVerdicts?(verdicts: readonly Verdict[]): Promise<void>;
  /** Rule upserts and deletes, in event-time order. */
  writeRuleChanges?(changes: readonly RuleChange[]): Promise<void>;
  /** Makes everything written so far durable. */
  flush(): Promise<void>;
  /** Flushes and releases connections. */
  close(): Promise<void>;
}
