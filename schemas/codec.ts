import { isIP } from 'node:net';
import type avro from 'avsc';
import { DecodeError } from '../errors.js';
import { fingerprintBytes, fingerprintHex } from './fingerprint.js';
import { requestLogType, type RequestLog } from './index.js';
import { RegistryUnavailableError, type SchemaRegistryClient } from './registry.js';

/** The three wire encodings of CONTRACTS §1, detected per message. */
export type WireEncoding = 'confluent' | 'single_object' | 'plain';

/** All encodings, in detection order. */
export const WIRE_ENCODINGS: readonly WireEncoding[] = ['confluent', 'single_object', 'plain'];

const SINGLE_OBJECT_MAGIC = Buffer.from([0xc3, 0x01]);

/** Plain Avro binary: just the datum. */
export function encodePlain(type: avro.Type, value: unknown): Buffer {
  return type.toBuffer(value);
}

/** Avro single-object encoding: `C3 01`, 8-byte little-endian CRC-64-AVRO fingerprint, datum. */
export function encodeSingleObject(type: avro.Type, value: unknown, fingerprint = fingerprintBytes(type)): Buffer {
  return Buffer.concat([SINGLE_OBJECT_MAGIC, fingerprint, type.toBuffer(value)]);
}

/** Confluent framing: `00`, 4-byte big-endian schema id, datum. */
export function encodeConfluent(schemaId: number, type: avro.Type, value: unknown): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(schemaId, 1);
  return Buffer.concat([head, type.toBuffer(value)]);
}

/** Which encoding a message is in, from its first bytes (Confluent first, then single-object, else plain). */
export function detectEncoding(buf: Buffer): WireEncoding {
  if (buf.length >= 5 && buf[0] === 0x00) return 'confluent';
  if (buf.length >= 10 && buf[0] === 0xc3 && buf[1] === 0x01) return 'single_object';
  return 'plain';
}

/** Options of {@link RequestLogDecoder}. */
export interface DecoderOptions {
  /** Schema the application reads with. Default: `schemas/request-log.avsc`. */
  reader?: avro.Type;
  /** Writer schema of plain-Avro messages. Default: the reader schema. */
  plainWriter?: avro.Type;
  /** Writer schemas that single-object messages may name by fingerprint (the reader is always known). */
  knownWriters?: avro.Type[];
  /** Registry for Confluent-framed messages. Without one they go to the dead-letter topic. */
  registry?: SchemaRegistryClient;
  /** Encodings accepted; others are rejected as `bad_magic`. Default: all three. */
  encodings?: readonly WireEncoding[];
}

type Resolved = { type: avro.Type; resolver: avro.Resolver | undefined } | DecodeError;

/**
 * Decodes request logs in any of the three wire encodings, resolving writer schemas that
 * differ from ours by Avro schema resolution. `prepare` does the only asynchronous work
 * (registry look-ups) once per batch, so `decode` stays synchronous on the hot path.
 */
export class RequestLogDecoder {
  private readonly reader: avro.Type;
  private readonly plain: Resolved;
  private readonly byFingerprint = new Map<string, Resolved>();
  private readonly bySchemaId = new Map<number, Resolved>();
  private readonly accepted: ReadonlySet<WireEncoding>;

  constructor(private readonly options: DecoderOptions = {}) {
    this.reader = options.reader ?? requestLogType;
    this.accepted = new Set(options.encodings ?? WIRE_ENCODINGS);
    this.plain = this.resolve(options.plainWriter ?? this.reader, 'plain writer schema');
    for (const w of [this.reader, ...(options.knownWriters ?? [])]) {
      this.byFingerprint.set(fingerprintHex(w), this.resolve(w, `schema ${fingerprintHex(w)}`));
    }
  }

  /**
   * Fetches the writer schemas of every Confluent-framed message not seen before.
   * Throws {@link RegistryUnavailableError} (retriable) when the registry cannot answer, so the
   * caller retries the batch rather than dead-lettering good records.
   */
  async prepare(values: Iterable<Buffer | null>): Promise<void> {
    const missing = new Set<number>();
    for (const buf of values) {
      if (buf && this.accepted.has('confluent') && detectEncoding(buf) === 'confluent') {
        const id = buf.readUInt32BE(1);
        if (!this.bySchemaId.has(id)) missing.add(id);
      }
    }
    for (const id of missing) {
      if (!this.options.registry) {
        this.bySchemaId.set(id, new DecodeError('unknown_schema_id', `schema id ${id}: no schema registry is configured`));
        continue;
      }
      const writer = await this.options.registry.getById(id);
      this.bySchemaId.set(
        id,
        writer
          ? this.resolve(writer, `registry schema id ${id}`)
          : new DecodeError('unknown_schema_id', `schema id ${id} is not in the schema registry`),
      );
    }
  }

  /** Decodes one message value. Throws {@link DecodeError} with a reason; never returns partial data. */
  decode(buf: Buffer | null): RequestLog {
    if (!buf || buf.length === 0) throw new DecodeError('empty', 'message value is empty or null');
    const encoding = detectEncoding(buf);
    if (!this.accepted.has(encoding)) {
      throw new DecodeError('bad_magic', `encoding ${encoding} (first byte 0x${buf[0]?.toString(16)}) is not accepted`);
    }
    let resolved: Resolved | undefined;
    let start = 0;
    if (encoding === 'confluent') {
      const id = buf.readUInt32BE(1);
      resolved = this.bySchemaId.get(id);
      if (!resolved) throw new RegistryUnavailableError(`schema id ${id} was not prepared`);
      start = 5;
    } else if (encoding === 'single_object') {
      const fp = buf.readBigUInt64LE(2).toString(16).padStart(16, '0');
      resolved = this.byFingerprint.get(fp) ?? new DecodeError('unknown_fingerprint', `writer schema fingerprint ${fp} is not known`);
      start = 10;
    } else {
      resolved = this.plain;
    }
    if (resolved instanceof DecodeError) throw resolved;
    let out: { value: unknown; offset: number };
    try {
      out = this.reader.decode(buf, start, resolved.resolver);
    } catch (err) {
      throw new DecodeError('invalid_avro', `${encoding}: ${(err as Error).message}`, err);
    }
    if (out.offset < 0) throw new DecodeError('truncated', `${encoding}: message ends inside the record (${buf.length} bytes)`);
    if (out.offset !== buf.length) {
      throw new DecodeError('trailing_bytes', `${encoding}: ${buf.length - out.offset} bytes left after the record`);
    }
    return validateRequestLog(out.value as RequestLog);
  }

  private resolve(writer: avro.Type, what: string): Resolved {
    if (writer.equals(this.reader)) return { type: writer, resolver: undefined };
    try {
      return { type: writer, resolver: this.reader.createResolver(writer) };
    } catch (err) {
      return new DecodeError('incompatible_schema', `${what} cannot be resolved to the reader schema: ${(err as Error).message}`, err);
    }
  }
}

const MAX_ASN = 4_294_967_295;
/** Longest JA4 accepted, characters: JA4 is 36, the JA4+ family stays well under this. It becomes an entity key everywhere. */
export const MAX_JA4_CHARS = 128;

/** Semantic checks that Avro types cannot express. Throws `invalid_value`. */
export function validateRequestLog(r: RequestLog): RequestLog {
  if (!Number.isSafeInteger(r.timestamp) || r.timestamp <= 0) {
    throw new DecodeError('invalid_value', `timestamp ${r.timestamp} is not a positive epoch-ms value`);
  }
  if (!Number.isSafeInteger(r.asn) || r.asn < 0 || r.asn > MAX_ASN) {
    throw new DecodeError('invalid_value', `asn ${r.asn} is outside 0..${MAX_ASN}`);
  }
  if (r.ja4 !== null && r.ja4.length > MAX_JA4_CHARS) {
    throw new DecodeError('invalid_value', `ja4 is ${r.ja4.length} characters long (at most ${MAX_JA4_CHARS}): '${r.ja4.slice(0, 64)}…'`);
  }
  if (isIP(r.client_ip) === 0) throw new DecodeError('invalid_value', `client_ip '${r.client_ip.slice(0, 64)}' is not an IP address`);
  if (r.challenge === undefined) throw new DecodeError('invalid_value', 'challenge outcome is not a known symbol');
  return r;
}

export { RegistryUnavailableError };
