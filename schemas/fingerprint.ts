import type { Type } from 'avsc';

/**
 * CRC-64-AVRO (Rabin) fingerprint of a schema's Parsing Canonical Form, as the Avro spec
 * defines for single-object encoding. Written here because avsc only offers md5/sha256
 * fingerprints; checked against vectors from Java Avro's SchemaNormalization.
 */
const EMPTY = 0xc15d213aa4d7a795n;
const MASK = 0xffffffffffffffffn;

const TABLE: bigint[] = (() => {
  const table: bigint[] = [];
  for (let i = 0; i < 256; i++) {
    let fp = BigInt(i);
    for (let j = 0; j < 8; j++) fp = (fp >> 1n) ^ (EMPTY & -(fp & 1n) & MASK);
    table.push(fp);
  }
  return table;
})();

/** CRC-64-AVRO of raw bytes, as an unsigned 64-bit bigint. */
export function rabin64(bytes: Uint8Array): bigint {
  let fp = EMPTY;
  for (const b of bytes) fp = (fp >> 8n) ^ (TABLE[Number((fp ^ BigInt(b)) & 0xffn)] as bigint);
  return fp;
}

/** Parsing Canonical Form: avsc's `schema()` with no options is the PCF as an object. */
export function canonicalForm(type: Type): string {
  return JSON.stringify(type.schema());
}

/** Fingerprint of a schema as the 8 little-endian bytes that single-object encoding carries. */
export function fingerprintBytes(type: Type): Buffer {
  const buf = Buffer.alloc(8);
  buf.writeBigUInt64LE(rabin64(Buffer.from(canonicalForm(type), 'utf8')));
  return buf;
}

/** Fingerprint as 16 lower-case hex digits (big-endian reading of the 64-bit value). */
export function fingerprintHex(type: Type): string {
  return rabin64(Buffer.from(canonicalForm(type), 'utf8')).toString(16).padStart(16, '0');
}
