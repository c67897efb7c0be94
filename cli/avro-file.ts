import { createReadStream, createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { pipeline as pipelineCb } from 'node:stream';
import avro from 'avsc';
import { requestLogType, type RequestLog } from '../schemas/index.js';

/** Options of {@link writeAvroFile}. */
export interface WriteAvroFileOptions {
  /** Block compression of the container file. Default `deflate`. */
  codec?: 'null' | 'deflate';
  /** Called with the number of records written so far, every 10 000 records and once at the end. */
  onProgress?: (n: number) => void;
}

const PROGRESS_EVERY = 10_000;

/**
 * Writes request logs to an Avro object container file with the reader schema
 * `schemas/request-log.avsc` as its writer schema, and returns how many records it wrote.
 *
 * This is avsc's `createFileEncoder` (a `BlockEncoder` piped into a file stream), assembled
 * by hand so that errors of the file stream (missing directory, full disk) reject the
 * promise instead of being lost, and so that it resolves only once the file is flushed and
 * closed. It waits for `drain` whenever the encoder's buffer is full, so a fast source never
 * piles records up in memory. An invalid record rejects with avsc's type error.
 */
export async function writeAvroFile(
  path: string,
  logs: AsyncIterable<RequestLog> | Iterable<RequestLog>,
  opts: WriteAvroFileOptions = {},
): Promise<number> {
  const encoder = new avro.streams.BlockEncoder(requestLogType, { codec: opts.codec ?? 'deflate' });
  // A 1 MiB file buffer lets encoding run ahead of the disk instead of waiting on every block.
  const done = pipeline(encoder, createWriteStream(path, { highWaterMark: 1 << 20 }));
  // Handled here so an early failure is not an unhandled rejection; awaited below.
  done.catch(() => undefined);
  const onProgress = opts.onProgress;
  let n = 0;
  try {
    if (Symbol.iterator in logs) {
      // Synchronous sources skip a microtask per record; only a full buffer awaits.
      for (const log of logs) {
        if (encoder.destroyed) break;
        // A failed pipeline never drains, so wait for whichever comes first.
        if (!encoder.write(log)) await Promise.race([once(encoder, 'drain'), done]);
        if (++n % PROGRESS_EVERY === 0) onProgress?.(n);
      }
    } else {
      for await (const log of logs) {
        if (encoder.destroyed) break;
        if (!encoder.write(log)) await Promise.race([once(encoder, 'drain'), done]);
        if (++n % PROGRESS_EVERY === 0) onProgress?.(n);
      }
    }
    encoder.end();
  } catch (err) {
    encoder.destroy(err as Error);
    await done.catch(() => undefined);
    throw err;
  }
  await done;
  onProgress?.(n);
  return n;
}

/**
 * Reads the request logs of an Avro object container file, resolving the file's writer
 * schema to ours (`avro.createFileDecoder` with `readerSchema`): fields the writer lacked
 * take their defaults (`ja4` null, `challenge` NONE). Read errors (missing file, corrupt
 * block) reject the iteration.
 */
export async function* readAvroFile(path: string): AsyncIterable<RequestLog> {
  // Same as avsc's createFileDecoder, but a failing read stream also fails the decoder.
  const decoder = new avro.streams.BlockDecoder({ readerSchema: requestLogType });
  pipelineCb(createReadStream(path), decoder, () => undefined);
  for await (const record of decoder) yield record as RequestLog;
}
