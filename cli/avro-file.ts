import { createReadStream, createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { pipeline as pipelineCb } from 'node:stream';
import { crc32 } from 'node:zlib';
import avro from 'avsc';
import { decompress as zstdDecompress } from 'fzstd';
import snappy from 'snappyjs';
import { requestLogType, type RequestLog } from '../schemas/index.js';

type Codec = (buf: Buffer, cb: (err: Error | null, out?: Buffer) => void) => void;

/**
 * Avro's `snappy` codec: raw snappy block followed by the big-endian CRC32 of the uncompressed
 * data (Avro spec, "Object Container Files"). avsc ships only `null` and `deflate`; Java and
 * Python writers often use snappy or zstandard, so a replay of "any .avro file" needs them.
 * snappyjs and fzstd are pure JavaScript, so nothing native has to build on the user's machine.
 */
const snappyDecode: Codec = (buf, cb) => {
  try {
    const out = Buffer.from(snappy.uncompress(buf.subarray(0, buf.length - 4)));
    const expected = buf.readUInt32BE(buf.length - 4);
    if (crc32(out) !== expected) throw new Error('snappy block checksum mismatch');
    cb(null, out);
  } catch (err) {
    cb(err as Error);
  }
};

const snappyEncode: Codec = (buf, cb) => {
  try {
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(buf));
    cb(null, Buffer.concat([Buffer.from(snappy.compress(buf)), crc]));
  } catch (err) {
    cb(err as Error);
  }
};

const zstandardDecode: Codec = (buf, cb) => {
  try {
    cb(null, Buffer.from(zstdDecompress(buf)));
  } catch (err) {
    cb(err as Error);
  }
};

/** Block codecs read: null, deflate (avsc's own), snappy and zstandard. */
const READ_CODECS = { ...avro.streams.BlockDecoder.defaultCodecs(), snappy: snappyDecode, zstandard: zstandardDecode };
/** Block codecs written: null, deflate and snappy. */
const WRITE_CODECS = { ...avro.streams.BlockEncoder.defaultCodecs(), snappy: snappyEncode };

/** Options of {@link writeAvroFile}. */
export interface WriteAvroFileOptions {
  /** Block compression of the container file. Default `deflate`. */
  codec?: 'null' | 'deflate' | 'snappy';
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
  const encoder = new avro.streams.BlockEncoder(requestLogType, { codec: opts.codec ?? 'deflate', codecs: WRITE_CODECS });
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
 * take their defaults (`ja4` null, `challenge` NONE). Codecs: null, deflate, snappy and
 * zstandard. Read errors (missing file, corrupt block, unknown codec) reject the iteration.
 */
export async function* readAvroFile(path: string): AsyncIterable<RequestLog> {
  // Same as avsc's createFileDecoder, but a failing read stream also fails the decoder.
  const decoder = new avro.streams.BlockDecoder({ readerSchema: requestLogType, codecs: READ_CODECS });
  pipelineCb(createReadStream(path), decoder, () => undefined);
  for await (const record of decoder) yield record as RequestLog;
}
