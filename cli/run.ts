import { Command } from 'commander';
import { loadConfig } from '../config.js';
import { errorMessage } from '../errors.js';
import { logger } from '../logger.js';
import { collect } from './replay.js';
import { startService, type Service } from './service.js';

/** Installs SIGTERM/SIGINT handlers that stop `service` gracefully within `graceMs`, then exit. */
export function stopOnSignals(service: Service, graceMs = 10_000): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting now');
        process.exit(130);
      }
      stopping = true;
      logger.info({ signal }, 'stopping: finishing the batch in hand, flushing sinks, committing offsets');
      const timer = setTimeout(() => {
        logger.error({ graceMs }, 'graceful stop took too long; exiting');
        process.exit(1);
      }, graceMs);
      timer.unref();
      service
        .stop()
        .then(() => {
          clearTimeout(timer);
          logger.info('stopped cleanly');
          resolve();
        })
        .catch((err: unknown) => {
          logger.error({ err: (err as Error).message }, 'error while stopping');
          process.exit(1);
        });
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
}

/** `burstwatch run` (CONTRACTS §5). */
export function runCommand(): Command {
  return new Command('run')
    .description('Run the live service: Avro request logs from Kafka in; verdicts to ClickHouse and rules to the compacted edge-rule topic out.')
    .option('--config <file>', 'JSON configuration file; BURSTWATCH__SECTION__KEY environment variables override it')
    .option('--brokers <list>', 'Kafka bootstrap brokers, comma-separated (overrides kafka.brokers)')
    .option('--topic <name>', 'input topic (overrides input.topic)')
    .option('--group <id>', 'consumer group (overrides input.group_id)')
    .option('--clickhouse <url>', 'ClickHouse HTTP URL (overrides clickhouse.url)')
    .option('--schema-registry <url>', 'Confluent-compatible schema registry (overrides input.schema_registry.url)')
    .option('--allow <entity>', "never make a rule for this entity, e.g. 'asn:15169' or 'ja4:t13d…' (repeatable; added to rules.allow)", collect, [])
    .option('--allow-file <path>', 'allowlist file, one entry per line, followed while running: edits or SIGHUP apply without a restart (rules.allow_file)')
    .addHelpText(
      'after',
      '\nStops gracefully on SIGTERM/SIGINT: finishes the batch in hand, flushes the sinks, commits, exits.\n' +
        'Metrics: http://127.0.0.1:9464/metrics (also /healthz and /readyz).\n' +
        '\nExample:\n  npx burstwatch run --config prod.json --allow asn:15169 --allow-file /etc/burstwatch/allow.txt\n',
    )
    .action(async (o: { config?: string; brokers?: string; topic?: string; group?: string; clickhouse?: string; schemaRegistry?: string; allow: string[]; allowFile?: string }) => {
      const overrides: Record<string, Record<string, unknown>> = {};
      if (o.brokers) overrides.kafka = { brokers: o.brokers.split(',') };
      if (o.topic || o.group || o.schemaRegistry) {
        overrides.input = {
          ...(o.topic ? { topic: o.topic } : {}),
          ...(o.group ? { group_id: o.group } : {}),
          ...(o.schemaRegistry ? { schema_registry: { url: o.schemaRegistry } } : {}),
        };
      }
      if (o.clickhouse) overrides.clickhouse = { url: o.clickhouse };
      if (o.allow.length > 0 || o.allowFile) {
        const base = loadConfig(o.config);
        overrides.rules = { ...(o.allow.length > 0 ? { allow: [...base.rules.allow, ...o.allow] } : {}), ...(o.allowFile ? { allow_file: o.allowFile } : {}) };
      }
      const config = loadConfig(o.config, overrides);
      const service = await startService(config);
      logger.info({ topic: config.input.topic, group: config.input.group_id }, 'burstwatch running; Ctrl-C to stop');
      // A stage stopped by an error retrying cannot fix (a bug, lost authorization): stop
      // what still runs and exit 1, so the supervisor restarts it and someone is told.
      const watch = setInterval(() => {
        const err = service.fatal();
        if (!err) return;
        clearInterval(watch);
        logger.fatal({ err: errorMessage(err) }, 'a stage failed for good; stopping and exiting 1');
        const timer = setTimeout(() => process.exit(1), 10_000);
        timer.unref();
        void service.stop().finally(() => process.exit(1));
      }, 1_000);
      watch.unref();
      await stopOnSignals(service);
      clearInterval(watch);
    });
}
