import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import { DecodeError } from '../errors.js';
import { detectEncoding, encodeConfluent, encodePlain, encodeSingleObject, RequestLogDecoder } from './codec.js';
import { requestLogType, type RequestLog } from './index.js';
import type { SchemaRegistryClient } from './registry.js';

const log: RequestLog = {
  timestamp: 1_793_608_800_123,
  request_id: 'r-1',
  client_ip: '2001:db8::1',
  asn: 4_200_000_001,
  country: 'DE',
  ja4: 't13d1516h2_8daaf6152771_02713d6af862',
  user_agent: 'Mozilla/5.0',
  method: 'GET',
  host: 'example.com',
  path: '/a?b=1',
  status: 200,
  response_bytes: 1234,
  protocol: 'HTTP/2',
  challenge: 'PASSED',
};

// An older producer: no ja4, no challenge, an extra field we do not know, fields reordered.
const oldWriter = avro.Type.forSchema({
  type: 'record',
  name: 'RequestLog',
  namespace: 'io.burstwatch',
  fields: [
    { name: 'request_id', type: 'string' },
    { name: 'timestamp', type: 'long' },
    { name: 'client_ip', type: 'string' },
    { name: 'asn', type: 'int' },
    { name: 'country', type: 'string' },
    { name: 'edge_pop', type: 'string' },
    { name: 'user_agent', type: 'string' },
    { name: 'method', type: 'string' },
    { name: 'host', type: 'string' },
    { name: 'path', type: 'string' },
    { name: 'status', type: 'int' },
    { name: 'response_bytes', type: 'long' },
    { name: 'protocol', type: 'string' },
  ],
});
const oldValue = { ...log, asn: 64512, edge_pop: 'FRA' };

function fakeRegistry(schemas: Record<number, avro.Type>): SchemaRegistryClient {
  return { getById: async (id: number) => schemas[id] ?? null } as unknown as SchemaRegistryClient;
}

function reasonOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof DecodeError) return err.reason;
    throw err;
  }
  return 'decoded';
}

describe('RequestLogDecoder', () => {
  it('detects and decodes all three encodings', async () => {
    const decoder = new RequestLogDecoder({ registry: fakeRegistry({ 7: requestLogType }) });
    const msgs = [
      encodePlain(requestLogType, log),
      encodeSingleObject(requestLogType, log),
      encodeConfluent(7, requestLogType, log),
    ];
    expect(msgs.map(detectEncoding)).toEqual(['plain', 'single_object', 'confluent']);
    await decoder.prepare(msgs);
    for (const m of msgs) expect(decoder.decode(m)).toEqual(log);
  });

  it('resolves a different writer schema in every encoding', async () => {
    const decoder = new RequestLogDecoder({
      registry: fakeRegistry({ 9: oldWriter }),
      knownWriters: [oldWriter],
      plainWriter: oldWriter,
    });
    const msgs = [
      encodePlain(oldWriter, oldValue),
      encodeSingleObject(oldWriter, oldValue),
      encodeConfluent(9, oldWriter, oldValue),
    ];
    await decoder.prepare(msgs);
    for (const m of msgs) {
      expect(decoder.decode(m)).toEqual({ ...log, asn: 64512, ja4: null, challenge: 'NONE' });
    }
  });

  it('gives a reason for every kind of bad message', async () => {
    const decoder = new RequestLogDecoder({ registry: fakeRegistry({}) });
    const good = encodePlain(requestLogType, log);
    const unknownId = encodeConfluent(99, requestLogType, log);
    await decoder.prepare([unknownId]);
    expect(reasonOf(() => decoder.decode(null))).toBe('empty');
    expect(reasonOf(() => decoder.decode(good.subarray(0, good.length - 3)))).toBe('truncated');
    expect(reasonOf(() => decoder.decode(Buffer.concat([good, Buffer.from([1, 2])])))).toBe('trailing_bytes');
    expect(reasonOf(() => decoder.decode(unknownId))).toBe('unknown_schema_id');
    expect(reasonOf(() => decoder.decode(encodeSingleObject(oldWriter, oldValue)))).toBe('unknown_fingerprint');
    expect(reasonOf(() => decoder.decode(encodePlain(requestLogType, { ...log, client_ip: 'not-an-ip' })))).toBe(
      'invalid_value',
    );
    expect(reasonOf(() => decoder.decode(Buffer.from('{"json":"is not avro"}')))).not.toBe('decoded');
    const plainOnly = new RequestLogDecoder({ encodings: ['plain'] });
    expect(reasonOf(() => plainOnly.decode(encodeSingleObject(requestLogType, log)))).toBe('bad_magic');
  });

  it('rejects a writer schema that cannot be resolved', async () => {
    const incompatible = avro.Type.forSchema({
      type: 'record',
      name: 'RequestLog',
      namespace: 'io.burstwatch',
      fields: [{ name: 'timestamp', type: 'string' }],
    });
    const decoder = new RequestLogDecoder({ registry: fakeRegistry({ 3: incompatible }) });
    const msg = encodeConfluent(3, incompatible, { timestamp: 'x' });
    await decoder.prepare([msg]);
    expect(reasonOf(() => decoder.decode(msg))).toBe('incompatible_schema');
  });

  it('asks the registry again later when it is unreachable, instead of dead-lettering', async () => {
    const down = {
      getById: async () => {
        const { RegistryUnavailableError } = await import('./registry.js');
        throw new RegistryUnavailableError('down');
      },
    } as unknown as SchemaRegistryClient;
    const decoder = new RequestLogDecoder({ registry: down });
    await expect(decoder.prepare([encodeConfluent(1, requestLogType, log)])).rejects.toMatchObject({ retriable: true });
  });
});
