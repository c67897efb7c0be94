import { createClient } from '@clickhouse/client';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { infraDown, infraUp } from './index.js';
import { dockerAvailable } from './testcontainers.js';

const docker = await dockerAvailable();
if (!docker.ok) console.info(`[infra] Docker tests skipped: ${docker.reason}`);

describe('infra with docker: true (testcontainers)', () => {
  afterAll(() => infraDown({ docker: true }), 120_000);

  it.skipIf(!docker.ok)('runs Kafka, ClickHouse and the registry against containers', async () => {
    const endpoints = await infraUp({ docker: true, onProgress: (m) => console.info(`[docker] ${m}`) });

    const admin = new Kafka({ clientId: 'infra-docker-test', brokers: endpoints.kafkaBrokers, logLevel: logLevel.WARN }).admin();
    await admin.connect();
    try {
      expect((await admin.describeCluster()).brokers.length).toBeGreaterThan(0);
    } finally {
      await admin.disconnect();
    }

    const clickhouse = createClient({ url: endpoints.clickhouseUrl });
    try {
      const result = await clickhouse.query({ query: 'SELECT 1 AS one', format: 'JSONEachRow' });
      expect(await result.json()).toEqual([{ one: 1 }]);
    } finally {
      await clickhouse.close();
    }

    const res = await fetch(`${endpoints.schemaRegistryUrl}/subjects/docker-test-value/versions`, {
      method: 'POST',
      headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
      body: JSON.stringify({ schema: JSON.stringify({ type: 'record', name: 'D', fields: [{ name: 'a', type: 'int' }] }) }),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { id: number }).id).toBeGreaterThan(0);
  }, 600_000);

  it.skipIf(docker.ok)('refuses docker: true with the reason when no engine is reachable', async () => {
    await expect(infraUp({ docker: true, services: ['clickhouse'] })).rejects.toThrow(/no Docker engine is reachable/);
  }, 60_000);
});
