/**
 * Integration test of the loopback services: brings them up (or finds them up) and checks that each
 * one really works. Leaves them running, since other suites share them.
 */
import { randomUUID } from 'node:crypto';
import { createClient } from '@clickhouse/client';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import { beforeAll, describe, expect, it } from 'vitest';
import { infraDown, infraStatus, infraUp, type Endpoints } from './index.js';

const REGISTRY_TYPE = 'application/vnd.schemaregistry.v1+json';

let endpoints: Endpoints;

beforeAll(async () => {
  // Generous: on a fresh machine this installs Java, Maven, ClickHouse and downloads the Kafka jars.
  endpoints = await infraUp({ onProgress: (message) => console.info(`[infra] ${message}`) });
}, 300_000);

async function registry(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${endpoints.schemaRegistryUrl}${path}`, {
    method,
    headers: { 'content-type': REGISTRY_TYPE, accept: REGISTRY_TYPE },
    body: body === undefined ? null : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as unknown };
}

/** A record schema with a name no earlier run used, so its id is new. */
function uniqueSchema(): { name: string; schema: object } {
  const name = `Probe${randomUUID().replaceAll('-', '')}`;
  return {
    name,
    schema: { type: 'record', name, namespace: 'burstwatch.test', fields: [{ name: 'path', type: 'string' }] },
  };
}

describe('infra on loopback', () => {
  it('kafka: creates a topic, produces a message and consumes it back', async () => {
    const topic = `infra-test-${randomUUID()}`;
    const kafka = new Kafka({ clientId: 'infra-test', brokers: endpoints.kafkaBrokers, logLevel: logLevel.WARN });
    const admin = kafka.admin();
    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
    const consumer = kafka.consumer({ groupId: `infra-test-${randomUUID()}`, allowAutoTopicCreation: false });
    await admin.connect();
    try {
      expect(await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true })).toBe(true);
      await producer.connect();
      await producer.send({ topic, acks: -1, messages: [{ key: 'k', value: 'hello burstwatch' }] });
      await consumer.connect();
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      const received = await new Promise<string>((resolve, reject) => {
        consumer
          .run({ eachMessage: async ({ message }) => resolve(message.value?.toString('utf8') ?? '') })
          .catch(reject);
      });
      expect(received).toBe('hello burstwatch');
    } finally {
      await consumer.disconnect();
      await producer.disconnect();
      await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
      await admin.disconnect();
    }
  }, 60_000);

  it('clickhouse: answers SELECT 1 through @clickhouse/client', async () => {
    const client = createClient({ url: endpoints.clickhouseUrl });
    try {
      const result = await client.query({ query: 'SELECT 1 AS one', format: 'JSONEachRow' });
      expect(await result.json()).toEqual([{ one: 1 }]);
    } finally {
      await client.close();
    }
  }, 30_000);

  it('registry: registers a schema, serves it by id, and gives the same schema the same id', async () => {
    const { name, schema } = uniqueSchema();
    const subject = `infra-test-${randomUUID()}-value`;
    const first = await registry('POST', `/subjects/${subject}/versions`, { schema: JSON.stringify(schema) });
    expect(first.status).toBe(200);
    const { id } = first.body as { id: number };
    expect(id).toBeGreaterThan(0);

    // Same schema, different whitespace: still the same id, and no new version.
    const again = await registry('POST', `/subjects/${subject}/versions`, {
      schema: JSON.stringify(schema, null, 2),
      schemaType: 'AVRO',
    });
    expect(again.body).toEqual({ id });
    expect((await registry('GET', `/subjects/${subject}/versions`)).body).toEqual([1]);

    const byId = await registry('GET', `/schemas/ids/${id}`);
    expect(byId.status).toBe(200);
    const served = JSON.parse((byId.body as { schema: string }).schema) as { name: string; fields: unknown };
    expect(served.name).toMatch(new RegExp(`${name}$`));
    expect(served.fields).toEqual([{ name: 'path', type: 'string' }]);

    const latest = await registry('GET', `/subjects/${subject}/versions/latest`);
    expect(latest.body).toMatchObject({ subject, version: 1, id });

    const missing = await registry('GET', `/subjects/no-such-${randomUUID()}/versions`);
    expect(missing).toEqual({ status: 404, body: { error_code: 40401, message: expect.any(String) as unknown } });
    const invalid = await registry('POST', `/subjects/${subject}/versions`, { schema: '{"type":"no-such-type"}' });
    expect(invalid.status).toBe(422);
    expect((invalid.body as { error_code: number }).error_code).toBe(42201);
  }, 30_000);

  it('registry: ids still resolve after the registry process restarts (state comes from _schemas)', async () => {
    const { schema } = uniqueSchema();
    const subject = `infra-test-${randomUUID()}-value`;
    const { id } = (await registry('POST', `/subjects/${subject}/versions`, { schema: JSON.stringify(schema) }))
      .body as { id: number };
    const pidBefore = (await infraStatus()).find((s) => s.name === 'registry')?.pid;

    await infraDown({ services: ['registry'] });
    await infraUp({ services: ['registry'] });

    const pidAfter = (await infraStatus()).find((s) => s.name === 'registry')?.pid;
    expect(pidAfter).toBeDefined();
    expect(pidAfter).not.toBe(pidBefore);
    const byId = await registry('GET', `/schemas/ids/${id}`);
    expect(byId.status).toBe(200);
    expect((await registry('POST', `/subjects/${subject}/versions`, { schema: JSON.stringify(schema) })).body).toEqual({
      id,
    });
  }, 120_000);

  it('a second infraUp finds everything running and starts nothing', async () => {
    const before = await infraStatus();
    expect(before.every((s) => s.ready)).toBe(true);
    const again = await infraUp();
    const after = await infraStatus();
    expect(again).toEqual(endpoints);
    expect(after.map((s) => [s.name, s.pid])).toEqual(before.map((s) => [s.name, s.pid]));
  }, 60_000);
});
