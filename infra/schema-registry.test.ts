import { randomUUID } from 'node:crypto';
import avro from 'avsc';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logger } from '../logger.js';
import { infraUp } from './index.js';
import { canonicalAvro, isCompatible, SchemaRegistryServer } from './schema-registry.js';

const v1 = { type: 'record', name: 'Hit', namespace: 'bw.test', fields: [{ name: 'path', type: 'string' }] };
const v2WithDefault = { ...v1, fields: [...v1.fields, { name: 'status', type: 'int', default: 200 }] };
const v2Required = { ...v1, fields: [...v1.fields, { name: 'status', type: 'int' }] };
const type = (schema: object): avro.Type => avro.Type.forSchema(schema as avro.Schema);

describe('canonicalAvro', () => {
  it('gives texts that differ only in layout and key order one identity', () => {
    const reordered = { fields: v1.fields, namespace: v1.namespace, name: v1.name, type: v1.type };
    expect(canonicalAvro(JSON.stringify(v1, null, 4)).key).toBe(canonicalAvro(JSON.stringify(v1)).key);
    expect(canonicalAvro(JSON.stringify(reordered)).key).toBe(canonicalAvro(JSON.stringify(v1)).key);
  });

  it('serves what was submitted, logical types and custom attributes included', () => {
    const withLogical = {
      type: 'record',
      name: 'Money',
      fields: [
        { name: 'at', type: { type: 'long', logicalType: 'timestamp-millis' } },
        { name: 'amount', type: { type: 'bytes', logicalType: 'decimal', precision: 12, scale: 2 }, 'x-unit': 'EUR' },
      ],
    };
    expect(JSON.parse(canonicalAvro(JSON.stringify(withLogical, null, 2)).text)).toEqual(withLogical);
  });

  it('rejects what Avro rejects', () => {
    expect(() => canonicalAvro('{"type":"record","name":"X","fields":[{"name":"a","type":"int","default":"x"}]}')).toThrow();
    expect(() => canonicalAvro('{"type":"no-such-type"}')).toThrow();
    expect(() => canonicalAvro('not json')).toThrow();
  });
});

describe('isCompatible', () => {
  it('follows Avro schema resolution for each level', () => {
    expect(isCompatible('BACKWARD', type(v2WithDefault), [type(v1)])).toBe(true);
    expect(isCompatible('BACKWARD', type(v2Required), [type(v1)])).toBe(false);
    expect(isCompatible('FORWARD', type(v2Required), [type(v1)])).toBe(true);
    expect(isCompatible('FULL', type(v2Required), [type(v1)])).toBe(false);
    expect(isCompatible('FULL', type(v2WithDefault), [type(v1)])).toBe(true);
    expect(isCompatible('NONE', type(v2Required), [type(v1)])).toBe(true);
  });

  it('checks only the latest version unless the level is transitive', () => {
    const history = [type(v2Required), type(v1)];
    // Reads v1 (status gets its default) but not v2Required (an int cannot be read as a string).
    const candidate = type({ ...v1, fields: [...v1.fields, { name: 'status', type: 'string', default: '' }] });
    expect(isCompatible('BACKWARD', candidate, history)).toBe(true);
    expect(isCompatible('BACKWARD_TRANSITIVE', candidate, history)).toBe(false);
  });
});

describe('SchemaRegistryServer against real Kafka', () => {
  const topic = `_schemas-test-${randomUUID()}`;
  const log = logger.child({}, { level: 'warn' }); // keep registrations out of the test output
  let brokers: string[];
  let server: SchemaRegistryServer;
  let url: string;

  const call = async (method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
      body: body === undefined ? null : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as unknown };
  };
  const register = (subject: string, schema: object) =>
    call('POST', `/subjects/${subject}/versions`, { schema: JSON.stringify(schema) });

  beforeAll(async () => {
    brokers = (await infraUp({ services: ['kafka'] })).kafkaBrokers;
    server = new SchemaRegistryServer({ brokers, port: 0, topic, log });
    url = await server.start();
  }, 300_000);

  afterAll(async () => {
    await server.close();
    const admin = new Kafka({ clientId: 'registry-test', brokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
  });

  it('enforces BACKWARD by default and numbers versions per subject', async () => {
    const first = await register('hits-value', v1);
    expect(first.status).toBe(200);
    const rejected = await register('hits-value', v2Required);
    expect(rejected.status).toBe(409);
    const second = await register('hits-value', v2WithDefault);
    expect(second.status).toBe(200);
    expect((second.body as { id: number }).id).toBe((first.body as { id: number }).id + 1);
    expect((await call('GET', '/subjects/hits-value/versions')).body).toEqual([1, 2]);
    const test = await call('POST', '/compatibility/subjects/hits-value/versions/latest', {
      schema: JSON.stringify(v1),
    });
    expect(test.body).toEqual({ is_compatible: true });
  });

  it('reuses the global id of a schema registered under another subject, and looks schemas up', async () => {
    const { id } = (await call('GET', '/subjects/hits-value/versions/1')).body as { id: number };
    expect((await register('copy-value', v1)).body).toEqual({ id });
    expect((await call('POST', '/subjects/copy-value', { schema: JSON.stringify(v1) })).body).toMatchObject({
      subject: 'copy-value',
      version: 1,
      id,
    });
    const unknown = await call('POST', '/subjects/copy-value', { schema: JSON.stringify(v2WithDefault) });
    expect(unknown).toMatchObject({ status: 404, body: { error_code: 40403 } });
    expect((await call('GET', `/schemas/ids/${id}/versions`)).body).toEqual([
      { subject: 'hits-value', version: 1 },
      { subject: 'copy-value', version: 1 },
    ]);
  });

  it('stores compatibility settings and rebuilds everything from the topic after a restart', async () => {
    expect((await call('PUT', '/config/copy-value', { compatibility: 'NONE' })).body).toEqual({ compatibility: 'NONE' });
    expect((await register('copy-value', v2Required)).status).toBe(200);
    const before = {
      subjects: (await call('GET', '/subjects')).body,
      latest: (await call('GET', '/subjects/copy-value/versions/latest')).body,
    };

    await server.close();
    server = new SchemaRegistryServer({ brokers, port: 0, topic, log });
    url = await server.start();

    expect((await call('GET', '/subjects')).body).toEqual(before.subjects);
    expect((await call('GET', '/subjects/copy-value/versions/latest')).body).toEqual(before.latest);
    expect((await call('GET', '/config/copy-value')).body).toEqual({ compatibilityLevel: 'NONE' });
    // Ids keep counting from the rebuilt maximum rather than restarting at 1.
    const fresh = await register('other-value', { type: 'enum', name: 'Method', symbols: ['GET', 'POST'] });
    expect((fresh.body as { id: number }).id).toBe(server.schemaCount);
  }, 60_000);
});
