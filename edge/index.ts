/** The edge stage: the consumer of the compacted edge-rule topic (CONTRACTS §4). */
export { EdgeRuleSubscriber, edgeSubscriberOptionsSchema, type EdgeSubscriberOptions, type EdgeRuleChange, type EdgeSubscriberCounters } from './subscriber.js';
export { RuleTable, compareRules, ruleMatches, REJECT_REASONS, MATCH_KEYS, type MatchDecision, type MatchRequest, type RejectReason, type ApplyOutcome, type RuleTableCounters } from './rule-table.js';
export { VerifiedCrawlers, verifiedCrawlerSchema, type VerifiedCrawler } from './crawlers.js';
