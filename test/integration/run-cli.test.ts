import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient } from '@clickhouse/client';
import { Kafka } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { localEndpoints } from '../../infra/index.js';
import { encodePlain, encodeSingleObject } from '../../schemas/codec.js';
import { requestLogType } from '../../schemas/index.js';
import { createServer, connect, type Socket } from 'node:net';
import { startService } from '../../cli/service.js';
import { parseConfig } from '../../config.js';
import { aggregatesInClickHouse, expectExactAggregates, traffic } from './helpers.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const bin = join(root, 'dist', 'cli', 'main.js');

/** `burstwatch run --config <file with settings>` as a child process, its stderr collected and its exit code awaited. */
function runWith(settings: unknown): { child: ChildProcess; stderr: () => string; exited: Promise<number | null> } {
  const configFile = join(mkdtempSync(join(tmpdir(), 'bw-run-')), 'config.json');
  writeFileSync(configFile, JSON.stringify(settings));
  const child = spawn(process.execPath, [bin, 'run', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stderr: () => stderr, exited };
}

/** `burstwatch run` as an operator runs it: a process, a config file, SIGTERM to stop. */
describe('burstwatch run (the built CLI; npm test builds it first)', () => {
  const id = randomBytes(4).toString('hex');
  const topic = `it-run-${id}`;
  const group = `it-run-${id}`;
  const database = `bw_it_run_${id}`;
  const port = 20_000 + Math.floor(Math.random() * 10_000);
  const kafka = new Kafka({ clientId: 'it', brokers: localEndpoints.kafkaBrokers, logLevel: 1 });

  afterAll(async () => {
    const ch = createClient({ url: localEndpoints.clickhouseUrl });
    await ch.command({ query: `DROP DATABASE IF EXISTS ${database}` }).catch(() => undefined);
    await ch.command({ query: `DROP DATABASE IF EXISTS ${database}_outage` }).catch(() => undefined);
    await ch.close();
    const admin = kafka.admin();
    await admin.connect();
    const internal = (g: string): string[] => [`${g}-panes`, `${g}-windows-changelog`, `${g}-window-verdicts`, `${g}-rules-changelog`];
    await admin
      .deleteTopics({ topics: [topic, `${topic}-dlq`, `${topic}-rules`, `${topic}-outage`, ...internal(group), ...internal(`${group}-outage`)] })
      .catch(() => undefined);
    await admin.disconnect();
  });

  it('consumes, serves /readyz, and on SIGTERM flushes, commits and exits 0 within 10 s', async () => {
    const logs = traffic().slice(0, 3000);
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic, messages: logs.map((l) => ({ key: l.client_ip, value: encodePlain(requestLogType, l) })) });
    await producer.disconnect();
    const { child, stderr, exited } = runWith({
      kafka: { brokers: localEndpoints.kafkaBrokers },
      input: { topic, group_id: group },
      dead_letter: { topic: `${topic}-dlq` },
      edge_rules: { topic: `${topic}-rules` },
      clickhouse: { url: localEndpoints.clickhouseUrl, database },
      metrics: { port },
    });
    try {
      // Ready, and every message consumed (the metric says so).
      const until = Date.now() + 60_000;
      let consumed = 0;
      while (Date.now() < until) {
        try {
          const ready = (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200;
          const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
          consumed = Number(/^burstwatch_messages_total (\d+)/m.exec(text)?.[1] ?? 0);
          if (ready && consumed >= logs.length) break;
        } catch {
          // not listening yet
        }
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(consumed, stderr().slice(-2000)).toBe(logs.length);
      const t0 = Date.now();
      child.kill('SIGTERM');
      const code = await exited;
      expect(code, stderr().slice(-2000)).toBe(0);
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(stderr()).toMatch(/stopped cleanly/);
    } finally {
      child.kill('SIGKILL');
    }
    const admin = kafka.admin();
    await admin.connect();
    const committed = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    await admin.disconnect();
    // Windows still open at the stop are not committed past: the offset is where they begin.
    expect(Number(committed[0]?.partitions[0]?.offset)).toBeGreaterThan(0);
    expect(Number(committed[0]?.partitions[0]?.offset)).toBeLessThan(logs.length);
  });

  it('on SIGTERM while ClickHouse is unreachable, exits within 10 s, and a restart loses nothing', async () => {
    // ClickHouse behind a TCP proxy this test can cut: connections refused, as when the server is down.
    const sockets = new Set<Socket>();
    const proxy = createServer((client) => {
      const upstream = connect(Number(new URL(localEndpoints.clickhouseUrl).port), '127.0.0.1');
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
    const proxyPort = (proxy.address() as { port: number }).port;
    const logs = traffic().slice(0, 6000);
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic: `${topic}-outage`, messages: logs.map((l) => ({ key: l.client_ip, value: encodeSingleObject(requestLogType, l) })) });
    await producer.disconnect();
    const settings = {
      kafka: { brokers: localEndpoints.kafkaBrokers },
      input: { topic: `${topic}-outage`, group_id: `${group}-outage`, max_bytes_per_partition: 16_384 },
      dead_letter: { topic: `${topic}-dlq` },
      edge_rules: { topic: `${topic}-rules` },
      clickhouse: { url: `http://127.0.0.1:${proxyPort}`, database: `${database}_outage` },
      windows: { idle_partition_ms: 2_000, idle_flush_ms: 2_000 },
      metrics: { port: port + 1 },
    };
    const { child, stderr, exited } = runWith(settings);
    const ch = createClient({ url: localEndpoints.clickhouseUrl, request_timeout: 120_000 });
    try {
      // Cut once the first rows are in: most of the stream is still to come.
      const until = Date.now() + 60_000;
      let rows = 0;
      while (Date.now() < until && rows === 0) {
        rows = await ch
          .query({ query: `SELECT count() AS n FROM ${database}_outage.window_aggregates`, format: 'JSONEachRow' })
          .then(async (r) => Number(((await r.json()) as { n: string }[])[0]?.n ?? 0))
          .catch(() => 0);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(rows, stderr().slice(-2000)).toBeGreaterThan(0);
      await new Promise<void>((r) => {
        proxy.close(() => r());
        for (const s of sockets) s.destroy();
      });
      // Waiting out the outage: not ready, and saying why.
      let readyz = '';
      const notReadyBy = Date.now() + 30_000;
      while (Date.now() < notReadyBy && !/clickhouse is failing/.test(readyz)) {
        readyz = await fetch(`http://127.0.0.1:${port + 1}/readyz`).then((r) => r.text()).catch(() => '');
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(readyz, stderr().slice(-2000)).toMatch(/clickhouse is failing/);
      const t0 = Date.now();
      child.kill('SIGTERM');
      const code = await exited;
      expect(Date.now() - t0, stderr().slice(-2000)).toBeLessThan(10_000);
      expect(code, stderr().slice(-2000)).toBe(0);
      // Restarted with ClickHouse back: every window arrives, exactly once after deduplication.
      const s = await startService(parseConfig({ ...settings, clickhouse: { url: localEndpoints.clickhouseUrl, database: `${database}_outage` }, metrics: { port: 0 } }));
      try {
        const settleBy = Date.now() + 120_000;
        while (Date.now() < settleBy && !(await s.settled()) && !s.fatal()) await new Promise((r) => setTimeout(r, 250));
        expect(s.fatal()).toBeNull();
      } finally {
        await s.stop();
      }
      expectExactAggregates(await aggregatesInClickHouse(ch, `${database}_outage`), logs, expect);
    } finally {
      child.kill('SIGKILL');
      proxy.close();
      await ch.close();
    }
  }, 300_000);

  it('exits 1, with /healthz failing and the cause logged, when a stage fails for good (garbage in its repartition topic)', async () => {
    const g = `${group}-poison`;
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic: `${g}-in`, numPartitions: 1, replicationFactor: 1 }] });
    await admin.disconnect();
    const settings = {
      kafka: { brokers: localEndpoints.kafkaBrokers },
      input: { topic: `${g}-in`, group_id: g },
      dead_letter: { topic: `${topic}-dlq` },
      edge_rules: { topic: `${topic}-rules` },
      clickhouse: { url: localEndpoints.clickhouseUrl, database },
      metrics: { port: port + 2 },
    };
    const { child, stderr, exited } = runWith(settings);
    let health = 0;
    try {
      const until = Date.now() + 60_000;
      while (Date.now() < until && (await fetch(`http://127.0.0.1:${port + 2}/readyz`).then((r) => r.status).catch(() => 0)) !== 200) {
        await new Promise((r) => setTimeout(r, 250));
      }
      // Something that is not burstwatch writes to stage 2's input.
      const producer = kafka.producer();
      await producer.connect();
      await producer.send({ topic: `${g}-panes`, messages: [{ key: 'asn:1', value: '{"v":1,"kind":"partial","oops":true}' }] });
      await producer.disconnect();
      const healthBy = Date.now() + 30_000;
      while (Date.now() < healthBy && health !== 503) {
        health = await fetch(`http://127.0.0.1:${port + 2}/healthz`).then((r) => r.status).catch(() => -1);
        await new Promise((r) => setTimeout(r, 100));
      }
      const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running after 30 s'), 30_000))]);
      expect(code, stderr().slice(-3000)).toBe(1);
    } finally {
      child.kill('SIGKILL');
      await admin.connect();
      await admin.deleteTopics({ topics: [`${g}-in`, `${g}-panes`, `${g}-windows-changelog`, `${g}-window-verdicts`, `${g}-rules-changelog`] }).catch(() => undefined);
      await admin.disconnect();
    }
    expect(health).toBe(503);
    expect(stderr()).toMatch(/a stage failed for good/);
    expect(stderr()).toMatch(/repartition message/);
  });

  it('exits 2 and names the key on a bad config', async () => {
    const { stderr, exited } = runWith({ windows: { size_ms: 'sixty' } });
    const code = await exited;
    expect(code).toBe(2);
    expect(stderr()).toMatch(/config key 'windows.size_ms'/);
  });
});
