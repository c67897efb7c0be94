/**
 * burstwatch as a library (CONTRACTS §6). The same stages the CLI wires together, for scripts
 * that want to embed them.
 */
export { BurstwatchError, ConfigError, DecodeError, InfraError, SinkError, withRetry, type DecodeReason } from './errors.js';
export { configSchema, loadConfig, parseConfig, type Config } from './config.js';
export { Pipeline, packageVersion, type PipelineTotals } from './pipeline.js';

export {
  requestLogType,
  edgeRuleType,
  edgeRuleFromAvro,
  edgeRuleToAvro,
  type RequestLog,
  type EdgeRule,
  type RuleMatch,
  type RuleAction,
  type RuleMode,
  type ChallengeOutcome,
} from './schemas/index.js';
export {
  RequestLogDecoder,
  detectEncoding,
  encodeConfluent,
  encodePlain,
  encodeSingleObject,
  validateRequestLog,
  WIRE_ENCODINGS,
  type WireEncoding,
  type DecoderOptions,
} from './schemas/codec.js';
export { fingerprintBytes, fingerprintHex, rabin64 } from './schemas/fingerprint.js';
export { SchemaRegistryClient, RegistryUnavailableError, type RegistryOptions } from './schemas/registry.js';

export { SlidingWindows, windowConfigSchema, type ClosedWindow, type WindowConfig } from './consumers/windows.js';
export { ENTITY_TYPES, pairKey, type EntityType, type WindowAggregateRow } from './consumers/aggregates.js';

export { createUnivariateDetector, restoreUnivariateDetector, univariateDetectorNames, Cusum, RobustDeviation, RobustEwma, type UnivariateDetector } from './detectors/index.js';
export { EntityScorer, entityScorerSchema } from './detectors/entity-scorer.js';
export { IsolationForest, averagePathLength, type IsolationForestOptions, type IsolationForestJSON } from './detectors/isolation-forest.js';
export { decide, decisionPolicySchema, expectedRises, type DecisionPolicy, type Decision, type Evidence } from './detectors/policy.js';
export { POPULATION_FEATURES, PopulationScorer, inlineTrainer, trainPopulationModel, type PopulationOptions, type PopulationScore, type PopulationTrainer } from './detectors/population.js';
export { WorkerTrainer, sharedWorkerTrainer } from './detectors/population-trainer.js';
export { scopeOf, verdictId, type Scope, type Verdict } from './detectors/verdict.js';

export { RuleLifecycle, ruleLifecycleSchema, matchOf, ruleIdOf, ruleChangeLine, type RuleChange } from './rules/lifecycle.js';

export type { PipelineSink } from './sinks/sink.js';
export { ClickHouseSink, clickhouseConfigSchema } from './sinks/clickhouse.js';
export { EdgeRuleSink, edgeRulesConfigSchema } from './sinks/edge-rules.js';
export { NdjsonSink } from './sinks/ndjson.js';
export { EdgeRuleSubscriber, edgeSubscriberOptionsSchema, RuleTable, VerifiedCrawlers, verifiedCrawlerSchema, type VerifiedCrawler, type EdgeSubscriberOptions, type EdgeRuleChange, type EdgeSubscriberCounters, type MatchDecision, type MatchRequest, type RejectReason } from './edge/index.js';

export { replay, type ReplayOptions, type ReplaySummary } from './cli/replay.js';
export { startService, type Service } from './cli/service.js';
