import { describe, expect, it } from 'vitest';
import { isRetriableStageError } from './consumers/transactional-stage.js';
import { BurstwatchError, SinkError, withRetry } from './errors.js';

describe('withRetry', () => {
  it('retries retriable errors only, with full-jitter exponential delays', async () => {
    const delays: number[] = [];
    let calls = 0;
    const result = await withRetry(
      () => {
        calls++;
        if (calls < 4) return Promise.reject(new SinkError('down', { retriable: true }));
        return Promise.resolve('ok');
      },
      { initialDelayMs: 1, maxDelayMs: 4, random: () => 0.999, onRetry: (_e, _a, d) => delays.push(d) },
    );
    expect(result).toBe('ok');
    expect(delays).toEqual([0, 1, 3]); // floor(0.999 × min(4, 1·2^n))
    let tries = 0;
    await expect(
      withRetry(() => {
        tries++;
        return Promise.reject(new SinkError('bad sql', { retriable: false }));
      }),
    ).rejects.toThrow('bad sql');
    expect(tries).toBe(1);
  });

  it('waits out an outage with retries: Infinity, and gives up at once when its signal aborts', async () => {
    let calls = 0;
    expect(await withRetry(() => (++calls < 30 ? Promise.reject(new SinkError('down', { retriable: true })) : Promise.resolve(calls)), { retries: Number.POSITIVE_INFINITY, initialDelayMs: 0, maxDelayMs: 0 })).toBe(30);
    const stop = new AbortController();
    const t0 = Date.now();
    setTimeout(() => stop.abort(), 50);
    await expect(
      withRetry(() => Promise.reject(new SinkError('down', { retriable: true })), { retries: Number.POSITIVE_INFINITY, initialDelayMs: 60_000, maxDelayMs: 60_000, random: () => 1, signal: stop.signal }),
    ).rejects.toThrow('down');
    expect(Date.now() - t0).toBeLessThan(5_000);
  });
});

describe('isRetriableStageError', () => {
  const kafkaError = (name: string, type?: string, cause?: unknown): Error => Object.assign(new Error(name), { name, ...(type ? { type } : {}), ...(cause ? { cause } : {}) });

  it('retries broker trouble and our retriable errors, not bugs, authorization or refused records', () => {
    expect(isRetriableStageError(kafkaError('KafkaJSConnectionError'))).toBe(true);
    expect(isRetriableStageError(kafkaError('KafkaJSNumberOfRetriesExceeded', undefined, kafkaError('KafkaJSConnectionError')))).toBe(true);
    expect(isRetriableStageError(new BurstwatchError('txn failed', { retriable: true, cause: kafkaError('KafkaJSProtocolError', 'NOT_COORDINATOR') }))).toBe(true);
    expect(isRetriableStageError(new SinkError('clickhouse down', { retriable: true }))).toBe(true);
    expect(isRetriableStageError(new TypeError('repartition message: bad key'))).toBe(false);
    expect(isRetriableStageError(new SinkError('clickhouse: unknown column', { retriable: false }))).toBe(false);
    expect(isRetriableStageError(new BurstwatchError('txn failed', { retriable: true, cause: kafkaError('KafkaJSProtocolError', 'TOPIC_AUTHORIZATION_FAILED') }))).toBe(false);
    expect(isRetriableStageError(kafkaError('KafkaJSProtocolError', 'MESSAGE_TOO_LARGE'))).toBe(false);
    expect(isRetriableStageError(kafkaError('KafkaJSNumberOfRetriesExceeded', undefined, kafkaError('KafkaJSSASLAuthenticationError')))).toBe(false);
  });
});
