#!/usr/bin/env node
import { Command } from 'commander';
import { BurstwatchError, ConfigError } from '../errors.js';
import { infraCommand } from '../infra/command.js';
import { logger } from '../logger.js';
import { packageVersion } from '../pipeline.js';
import { demoCommand } from './demo.js';
import { replayCommand } from './replay.js';
import { rulesCommand } from './rules.js';
import { runCommand } from './run.js';
import { simulateCommand } from './simulate.js';

const program = new Command('burstwatch')
  .description('Stream-processing anomaly detector for web traffic logs: Avro request logs from Kafka in; verdicts to ClickHouse and edge rules to a compacted Kafka topic out.')
  .version(packageVersion())
  .showHelpAfterError()
  .addCommand(demoCommand())
  .addCommand(runCommand())
  .addCommand(replayCommand())
  .addCommand(simulateCommand())
  .addCommand(rulesCommand())
  .addCommand(infraCommand())
  .addHelpText('after', '\nRun `burstwatch <command> --help` for the options of a command.\nLogs are JSON lines on stderr (BURSTWATCH_LOG_LEVEL=debug|info|warn|error).\n');

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`error: ${err.message}\n`);
    process.exitCode = 2;
  } else if (err instanceof BurstwatchError) {
    process.stderr.write(`error: ${err.message}\n`);
    logger.debug({ err }, 'details');
    process.exitCode = 1;
  } else {
    process.stderr.write(`error: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  }
  logger.flush();
}
