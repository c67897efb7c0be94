import { Command } from 'commander';
import { loadConfig } from '../config.js';
import { createKafka } from '../consumers/kafka-client.js';
import { EdgeRuleSubscriber, type EdgeRuleChange } from '../edge/subscriber.js';
import { logger } from '../logger.js';
import { ruleChangeLine } from '../rules/lifecycle.js';
import type { EdgeRule } from '../schemas/index.js';

interface RulesOptions {
  topic?: string;
  brokers?: string;
  config?: string;
}

/** A subscriber on the topic and brokers of the config (kafka section: TLS, SASL), overridden by the flags. */
function subscriber(o: RulesOptions): EdgeRuleSubscriber {
  const config = loadConfig(o.config, o.brokers ? { kafka: { brokers: o.brokers.split(',').map((b) => b.trim()) } } : {});
  return new EdgeRuleSubscriber({
    kafka: createKafka({ ...config.kafka, client_id: `${config.kafka.client_id}-rules-cli` }),
    topic: o.topic ?? config.edge_rules.topic,
  });
}

/**
 * One NDJSON line per message of the topic, in the replay shape of CONTRACTS §4. A tombstone
 * carries the rule it deleted when the subscriber held it; otherwise (it had expired here, or
 * was never seen) only `op`, `rule_id` and `at`. Malformed messages print nothing (they are
 * logged on stderr with their reason).
 */
export function changeLine(c: EdgeRuleChange): Record<string, unknown> | null {
  const o = c.outcome;
  if (o.kind === 'rejected' || c.rule_id === null) return null;
  if (o.kind === 'delete') {
    return o.previous ? { ...ruleChangeLine({ op: 'upsert', at: c.at, rule: o.previous }), op: 'delete' } : { op: 'delete', rule_id: c.rule_id, at: c.at };
  }
  return ruleChangeLine({ op: 'upsert', at: c.at, rule: o.rule });
}

function matchText(r: EdgeRule): string {
  return Object.entries(r.match)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(' ');
}

function inText(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** The rules as an aligned plain-text table. */
export function rulesTable(rules: readonly EdgeRule[], now: number): string {
  const rows = [
    ['RULE ID', 'ACTION', 'MODE', 'MATCH', 'EXPIRES IN', 'SCORE', 'REASON'],
    ...rules.map((r) => [r.rule_id, r.action + (r.action === 'rate_limit' && r.rate_limit_rps !== null ? ` ${r.rate_limit_rps}/s` : ''), r.mode, matchText(r), inText(r.expires_at - now), r.score.toFixed(2), r.reason]),
  ];
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length))) ?? [];
  return `${rows.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')).join('\n')}\n`;
}

/** Resolves on the first SIGINT/SIGTERM, or when stdout is closed by its reader (`| head`). */
function untilStopped(): Promise<string> {
  return new Promise((resolve) => {
    const done = (why: string): void => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      resolve(why);
    };
    const onInt = (): void => done('SIGINT');
    const onTerm = (): void => done('SIGTERM');
    process.once('SIGINT', onInt);
    process.once('SIGTERM', onTerm);
    process.stdout.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'EPIPE' ? 'stdout closed' : `stdout: ${err.message}`));
  });
}

/** The options every `rules` subcommand takes: where the topic is. */
function withConnection(cmd: Command): Command {
  return cmd
    .option('--topic <name>', 'edge-rule topic (default: edge_rules.topic of the config, edge-rules)')
    .option('--brokers <list>', 'Kafka bootstrap brokers, comma-separated (default: kafka.brokers of the config, 127.0.0.1:19092)')
    .option('--config <file>', 'JSON configuration file (its kafka section is used: TLS, SASL)');
}

function tailCommand(): Command {
  return withConnection(new Command('tail').description('Follow the edge-rule topic and print each rule change as an NDJSON line (CONTRACTS §4 replay shape) as it arrives.'))
    .option('--from-beginning', 'also print every message already on the topic (else only changes after the rules in force are read)', false)
    .addHelpText(
      'after',
      '\nThe rules in force are read first (quietly, unless --from-beginning), so a delete line carries the rule it removes.\n' +
        'Lines: {"op":"upsert"|"delete","rule_id":…,"match":{…},"action":…,"mode":…,"created_at":…,"expires_at":…,"at":…,…}.\n' +
        'Malformed messages are not printed; they are logged on stderr with their reason. Ctrl-C or SIGTERM stops.\n' +
        '\nExample:\n  npx burstwatch rules tail --brokers k1:9092 | jq -c \'select(.op == "upsert")\'\n',
    )
    .action(async (o: RulesOptions & { fromBeginning: boolean }) => {
      const sub = subscriber(o);
      sub.on('change', (c) => {
        if (c.bootstrap && !o.fromBeginning) return;
        const line = changeLine(c);
        if (line) process.stdout.write(`${JSON.stringify(line)}\n`);
      });
      const stopped = untilStopped();
      await sub.start();
      logger.info({ topic: sub.topic, rules: sub.size }, 'following the edge-rule topic; Ctrl-C to stop');
      const why = await stopped;
      logger.info({ why }, 'stopping');
      await sub.stop();
    });
}

function listCommand(): Command {
  return withConnection(new Command('list').description('Read the edge-rule topic up to its high watermark and print the rules in force now, as an edge node holds them; then exit.'))
    .option('--json', 'one NDJSON line per rule (every field of schemas/edge-rule.avsc; match holds only the keys set) instead of a table', false)
    .addHelpText('after', '\nRules past their expires_at are not listed, even if their tombstone has not come yet.\n\nExample:\n  npx burstwatch rules list --json | jq -r .rule_id\n')
    .action(async (o: RulesOptions & { json: boolean }) => {
      const sub = subscriber(o);
      await sub.start();
      try {
        const rules = sub.rules();
        if (o.json) process.stdout.write(rules.map((r) => `${JSON.stringify(r)}\n`).join(''));
        else if (rules.length === 0) process.stdout.write(`no rules in force on ${sub.topic}\n`);
        else process.stdout.write(rulesTable(rules, Date.now()));
        const c = sub.counters;
        const rejected = Object.values(c.rejected).reduce((a, b) => a + b, 0);
        logger.info({ topic: sub.topic, rules: rules.length, messages: c.messages, rejected, refused_at_cap: c.refused_at_cap }, 'rules listed');
      } finally {
        await sub.stop();
      }
    });
}

/** `burstwatch rules tail|list`: the edge-rule topic as an edge node sees it. */
export function rulesCommand(): Command {
  return new Command('rules')
    .description('Look at the edge-rule topic as an edge node sees it: list the rules in force, or tail the changes.')
    .addCommand(listCommand())
    .addCommand(tailCommand());
}
