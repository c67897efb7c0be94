import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import { canonicalForm, fingerprintBytes, fingerprintHex } from './fingerprint.js';

// Vectors computed with Java Avro 1.11.4 SchemaNormalization.parsingFingerprint64.
const vectors: [unknown, string, string][] = [
  ['null', '"null"', '63dd24e7cc258f8a'],
  ['int', '"int"', '7275d51a3f395c8f'],
  [
    { type: 'record', name: 'R', doc: 'dropped by PCF', fields: [{ name: 'a', type: 'long', default: 1 }] },
    '{"name":"R","type":"record","fields":[{"name":"a","type":"long"}]}',
    '928d444ef4b5899a',
  ],
];

describe('CRC-64-AVRO fingerprint', () => {
  it.each(vectors)('matches Java Avro for %j', (schema, pcf, hex) => {
    const type = avro.Type.forSchema(schema as avro.Schema);
    expect(canonicalForm(type)).toBe(pcf);
    expect(fingerprintHex(type)).toBe(hex);
    expect(fingerprintBytes(type).readBigUInt64LE()).toBe(BigInt('0x' + hex));
  });
});
