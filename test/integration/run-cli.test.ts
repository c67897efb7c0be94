import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient } from '@clickhouse/client';
import { Kafka } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { localEndpoints } from '../../infra/index.js';
import { encodePlain } from '../../schemas/codec.js';
import { requestLogType } from '../../schemas/index.js';
import { traffic } from './helpers.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const bin = join(root, 'dist', 'cli', 'main.js');

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
    await ch.close();
    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [topic, `${topic}-dlq`, `${topic}-rules`] }).catch(() => undefined);
    await admin.disconnect();
  });

  it('consumes, serves /readyz, and on SIGTERM flushes, commits and exits 0 within 10 s', async () => {
    const logs = traffic().slice(0, 3000);
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic, messages: logs.map((l) => ({ key: l.client_ip, value: encodePlain(requestLogType, l) })) });
    await producer.disconnect();
    const dir = mkdtempSync(join(tmpdir(), 'bw-run-'));
    const configFile = join(dir, 'config.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        kafka: { brokers: localEndpoints.kafkaBrokers },
        input: { topic, group_id: group },
        dead_letter: { topic: `${topic}-dlq` },
        edge_rules: { topic: `${topic}-rules` },
        clickhouse: { url: localEndpoints.clickhouseUrl, database },
        metrics: { port },
      }),
    );
    const child = spawn(process.execPath, [bin, 'run', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
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
      expect(consumed, stderr.slice(-2000)).toBe(logs.length);
      const t0 = Date.now();
      child.kill('SIGTERM');
      const code = await exited;
      expect(code, stderr.slice(-2000)).toBe(0);
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(stderr).toMatch(/stopped cleanly/);
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

  it('exits 2 and names the key on a bad config', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bw-run-'));
    const configFile = join(dir, 'bad.json');
    writeFileSync(configFile, JSON.stringify({ windows: { size_ms: 'sixty' } }));
    const child = spawn(process.execPath, [bin, 'run', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(code).toBe(2);
    expect(stderr).toMatch(/config key 'windows.size_ms'/);
  });
});
