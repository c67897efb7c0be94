/**
 * One error hierarchy for the whole pipeline (after kafkajs `src/errors.js`): every error says
 * whether retrying can help (`retriable`) and carries its `cause`, so the retry helper and the
 * operator never have to guess from a message string.
 */
export class BurstwatchError extends Error {
  /** Whether the same operation may succeed if tried again later. */
  readonly retriable: boolean;

  constructor(message: string, options: { retriable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.retriable = options.retriable ?? false;
  }
}

/** A configuration value is missing or wrong; `key` is the dotted path of the offending key. */
export class ConfigError extends BurstwatchError {
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(`config key '${key}': ${message}`);
  }
}

/** Why a message could not be decoded; the reason goes onto the dead-letter record. */
export type DecodeReason =
  | 'empty'
  | 'truncated'
  | 'trailing_bytes'
  | 'bad_magic'
  | 'unknown_schema_id'
  | 'unknown_fingerprint'
  | 'incompatible_schema'
  | 'registry_unavailable'
  | 'invalid_avro'
  | 'invalid_value'
  | 'future_timestamp';

/** A single message could not be turned into a request log. Never retriable for that message. */
export class DecodeError extends BurstwatchError {
  constructor(
    readonly reason: DecodeReason,
    message: string,
    cause?: unknown,
  ) {
    super(message, { retriable: false, cause });
  }
}

/** A sink or service call failed; `retriable` says whether backing off and retrying can help. */
export class SinkError extends BurstwatchError {}

/** A local service (Kafka, ClickHouse, registry) could not be installed, started or reached. */
export class InfraError extends BurstwatchError {}

/** Wraps anything thrown into a message that is safe to log. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * Runs `fn` until it succeeds, retrying only errors whose `retriable` flag is set (or that
 * `isRetriable` accepts), with full-jitter exponential backoff (AWS architecture blog,
 * "Exponential Backoff And Jitter", 2015). `random` is injectable so tests are deterministic.
 * `retries` may be `Infinity` (an outage is waited out); `signal` ends the waiting at once.
 */
export async function withRetry<T>(
  fn: (attempt: number) => Promise<T>,
  options: {
    retries?: number;
    initialDelayMs?: number;
    maxDelayMs?: number;
    isRetriable?: (err: unknown) => boolean;
    onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
    random?: () => number;
    signal?: AbortSignal;
  } = {},
): Promise<T> {
  const retries = options.retries ?? 5;
  const initial = options.initialDelayMs ?? 200;
  const max = options.maxDelayMs ?? 10_000;
  const random = options.random ?? Math.random;
  const isRetriable =
    options.isRetriable ?? ((err: unknown) => err instanceof BurstwatchError && err.retriable);
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= retries || !isRetriable(err) || options.signal?.aborted) throw err;
      const delay = backoffDelay(attempt, initial, max, random);
      options.onRetry?.(err, attempt + 1, delay);
      await abortableSleep(delay, options.signal);
      // Aborted while waiting: give up with the error that made it wait.
      if (options.signal?.aborted) throw err;
    }
  }
}

/** Full-jitter exponential backoff: a uniform wait in [0, min(max, initial · 2^attempt)), ms. */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, random: () => number = Math.random): number {
  return Math.floor(random() * Math.min(maxMs, initialMs * 2 ** attempt));
}

/** Resolves after `ms`, or as soon as `signal` aborts. */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
