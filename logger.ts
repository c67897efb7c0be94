import { destination, pino, type Logger } from 'pino';

/**
 * The process-wide structured logger. JSON lines on stderr so that stdout stays free for
 * command output (NDJSON, tables). Level from `BURSTWATCH_LOG_LEVEL` (default `info`).
 * Credentials are redacted wherever they appear in a logged object.
 */
export const logger: Logger = pino(
  {
    name: 'burstwatch',
    level: process.env.BURSTWATCH_LOG_LEVEL ?? 'info',
    redact: {
      paths: [
        'password',
        '*.password',
        '*.*.password',
        'sasl',
        '*.sasl',
        '*.*.sasl',
        'authorization',
        '*.authorization',
        'headers.authorization',
      ],
      censor: '[redacted]',
    },
  },
  destination({ dest: 2, sync: false }),
);

export type { Logger };
