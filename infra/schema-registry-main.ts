/**
 * Entry point of the schema registry child process that `burstwatch infra up` starts
 * (compiled to dist/infra/schema-registry-main.js). See schema-registry.ts for why it exists.
 *
 *   node dist/infra/schema-registry-main.js --brokers 127.0.0.1:19092 [--port 18081] [--host 127.0.0.1] [--topic _schemas]
 *
 * Logs are pino JSON lines on stderr; SIGTERM or SIGINT closes it cleanly.
 */
import { parseArgs } from 'node:util';
import { errorMessage, withRetry } from '../errors.js';
import { logger } from '../logger.js';
import { SchemaRegistryServer } from './schema-registry.js';

const { values } = parseArgs({
  options: {
    brokers: { type: 'string' },
    port: { type: 'string', default: '18081' },
    host: { type: 'string', default: '127.0.0.1' },
    topic: { type: 'string', default: '_schemas' },
  },
  strict: true,
});

function exit(code: number): void {
  // pino writes asynchronously; flush so the last (often the most useful) line is not lost.
  logger.flush(() => process.exit(code));
}

const port = Number(values.port);
if (!values.brokers || !Number.isInteger(port) || port < 0 || port > 65_535) {
  logger.fatal(
    { args: process.argv.slice(2) },
    'usage: schema-registry-main --brokers host:port[,host:port] [--port n] [--host h] [--topic t]',
  );
  exit(2);
} else {
  const server = new SchemaRegistryServer({
    brokers: values.brokers.split(',').map((b) => b.trim()),
    port,
    host: values.host,
    topic: values.topic,
  });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'schema registry stopping');
    server.close().then(
      () => exit(0),
      (err: unknown) => {
        logger.error({ err: errorMessage(err) }, 'schema registry did not close cleanly');
        exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  try {
    // kafkajs errors carry `retriable` like ours, so a broker that is still electing a leader for
    // `_schemas` or a coordinator that is loading is waited out instead of failing the start.
    await withRetry(() => server.start(), {
      retries: 6,
      initialDelayMs: 500,
      isRetriable: (err) => (err as { retriable?: unknown }).retriable === true,
      onRetry: (err, attempt, delayMs) =>
        logger.warn({ err: errorMessage(err), attempt, delayMs }, 'schema registry start failed, retrying'),
    });
  } catch (err) {
    logger.fatal({ err: errorMessage(err) }, 'schema registry could not start');
    exit(1);
  }
}
