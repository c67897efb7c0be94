import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient } from '@clickhouse/client';
import { Kafka } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startService, type Service } from '../../cli/service.js';
import { parseConfig, type Config } from '../../config.js';
import { internalTopics } from '../../consumers/topology.js';
import { infraDown, infraUp, localEndpoints } from '../../infra/index.js';
import { encodeSingleObject } from '../../schemas/codec.js';
import { requestLogType } from '../../schemas/index.js';
import { aggregatesInClickHouse, delayingProxy, expectExactAggregates, produceToNewTopic, readTopic, traffic } from './helpers.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const bin = join(root, 'dist', 'cli', 'main.js');

/** Everything the pipeline produced for one run: the ClickHouse tables under FINAL and the compacted rule set. */
interface Outcome {
  aggregates: unknown[];
  verdicts: unknown[];
  ruleEvents: unknown[];
  rules: Record<string, string>;
}

/**
 * The three stages on real Kafka and ClickHouse, run three ways over the same input (three
 * partitions keyed by client IP, so every ASN's records are spread over all of them):
 * uninterrupted in one process; killed with SIGKILL mid-stream and restarted; and in two
 * processes, one of which leaves mid-stream. All three must produce exactly the same
 * aggregates, verdicts, rule events and rules: nothing lost, nothing counted twice.
 */
describe('stages: restart, rebalance and two processes on real Kafka and ClickHouse', () => {
  const id = randomBytes(4).toString('hex');
  const topic = `it-stages-${id}`;
  const kafka = new Kafka({ clientId: 'it', brokers: localEndpoints.kafkaBrokers, logLevel: 1 });
  const ch = createClient({ url: localEndpoints.clickhouseUrl });
  const logs = traffic();
  const outcomes: Record<string, Outcome> = {};
  const configs: Config[] = [];
  const details: Record<string, number> = {};

  function configFor(name: string): Config {
    const c = parseConfig({
      kafka: { brokers: localEndpoints.kafkaBrokers },
      input: { topic, group_id: `it-stages-${name}-${id}`, max_bytes_per_partition: 16_384 },
      dead_letter: { topic: `it-stages-dlq-${name}-${id}` },
      edge_rules: { topic: `it-stages-rules-${name}-${id}` },
      clickhouse: { url: localEndpoints.clickhouseUrl, database: `bw_it_stages_${name}_${id}` },
      windows: { idle_partition_ms: 2_000, idle_flush_ms: 2_000 },
      topology: { repartition_partitions: 4 },
      scorer: { robust_deviation: { history: 30, warmup: 12 } },
      metrics: { port: 0 },
    });
    configs.push(c);
    return c;
  }

  /** Whether the input group has committed every partition of its topic to the end. */
  async function inputCommitted(c: Config): Promise<boolean> {
    const admin = kafka.admin();
    await admin.connect();
    try {
      const ends = await admin.fetchTopicOffsets(c.input.topic);
      const [committed] = await admin.fetchOffsets({ groupId: c.input.group_id, topics: [c.input.topic] });
      return ends.every((e) => committed?.partitions.find((p) => p.partition === e.partition)?.offset === e.high);
    } finally {
      await admin.disconnect();
    }
  }

  /**
   * Waits until stage 1 has committed the whole input (unless `wholeInput` is false) and every
   * service has been settled for 3 s in a row (everything read went all the way through the stages).
   */
  async function drain(c: Config, services: Service[], timeoutMs = 150_000, wholeInput = true): Promise<void> {
    const until = Date.now() + timeoutMs;
    let since: number | null = null;
    while (Date.now() < until) {
      const ok = (await Promise.all(services.map((s) => s.settled()))).every(Boolean) && (!wholeInput || (await inputCommitted(c)));
      for (const s of services) if (s.fatal()) throw s.fatal() as Error;
      if (!ok) since = null;
      else if (since === null) since = Date.now();
      else if (Date.now() - since >= 3_000) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    const state = services.map((s) => ({
      stats: s.stats,
      panes: s.paneTasks().map((t) => [t.partition, t.builder.openPanes, t.builder.sealedThrough]),
      windows: s.windowTasks().map((t) => [t.partition, t.assembler.heldPanes, t.assembler.pendingPanes, t.assembler.progressSnapshot()]),
      rules: s.ruleTask()?.pendingWindows,
      parts: [s.panes.partitions, s.windows.partitions, s.rules.partitions],
    }));
    throw new Error(`the stages did not settle in time: committed=${await inputCommitted(c)} ${JSON.stringify(state)}`);
  }

  async function outcome(c: Config): Promise<Outcome> {
    const db = c.clickhouse.database;
    const q = async (query: string): Promise<unknown[]> => (await (await ch.query({ query, format: 'JSONEachRow' })).json()) as unknown[];
    const messages = await readTopic(kafka, c.edge_rules.topic, 1);
    const rules: Record<string, string> = {};
    for (const m of messages) {
      if (m.value === null) delete rules[m.key ?? ''];
      else rules[m.key ?? ''] = m.value.toString('base64');
    }
    const result = {
      aggregates: await q(
        `SELECT entity_type, entity, toUnixTimestamp(window_start) AS ws, requests, unique_ips, unique_paths, unique_user_agents, unique_ja4s, ` +
          `unique_asns, status_4xx, status_401, post_requests, response_bytes, requests_per_ip_max, top_paths, top_path_requests ` +
          `FROM ${db}.window_aggregates FINAL ORDER BY entity_type, entity, ws`,
      ),
      verdicts: await q(
        `SELECT entity_type, entity, toUnixTimestamp(window_start) AS ws, score, anomalous, reasons, feature_values, typical_values ` +
          `FROM ${db}.verdicts FINAL ORDER BY entity_type, entity, ws`,
      ),
      ruleEvents: await q(
        `SELECT rule_id, op, toUnixTimestamp(event_time) AS at, toUnixTimestamp(expires_at) AS exp, score, verdict_id FROM ${db}.rule_events FINAL ORDER BY rule_id, at, op`,
      ),
      rules,
    };
    // Kept for a diff when a comparison fails.
    writeFileSync(join(tmpdir(), `burstwatch-stages-${c.input.group_id}.json`), JSON.stringify(result, null, 1));
    return result;
  }

  beforeAll(async () => {
    await produceToNewTopic(kafka, topic, logs.map((log) => ({ key: log.client_ip, value: encodeSingleObject(requestLogType, log) })));
  });

  afterAll(async () => {
    const admin = kafka.admin();
    await admin.connect();
    const topics = [topic, `${topic}-two`];
    for (const c of configs) {
      await ch.command({ query: `DROP DATABASE IF EXISTS ${c.clickhouse.database}` }).catch(() => undefined);
      const t = internalTopics(c.topology, c.input.group_id);
      topics.push(c.dead_letter.topic, c.edge_rules.topic, t.repartition, t.changelog, t.verdicts, t.rulesChangelog);
    }
    await admin.deleteTopics({ topics }).catch(() => undefined);
    await admin.disconnect();
    await ch.close();
  });

  it('uninterrupted, in one process: the brute-force aggregates, and the burst flagged', async () => {
    const c = configFor('one');
    const s = await startService(c);
    await drain(c, [s]);
    await s.stop();
    outcomes.one = await outcome(c);
    expectExactAggregates(await aggregatesInClickHouse(ch, c.clickhouse.database), logs, expect);
    expect(Object.keys(outcomes.one.rules).length).toBeGreaterThan(0);
    expect(outcomes.one.verdicts.length).toBeGreaterThan(0);
  });

  it('killed with SIGKILL mid-stream and restarted: exactly the outcome of the uninterrupted run', async () => {
    const c = configFor('kill');
    const dir = mkdtempSync(join(tmpdir(), 'bw-stages-'));
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ ...c, metrics: { port: 0, host: '127.0.0.1' } }));
    const child = spawn(process.execPath, [bin, 'run', '--config', file], { stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    // Kill it once some windows are in ClickHouse, long before the stream is through.
    const until = Date.now() + 90_000;
    let rowsAtKill = 0;
    while (Date.now() < until) {
      rowsAtKill = await ch
        .query({ query: `SELECT count() AS n FROM ${c.clickhouse.database}.window_aggregates`, format: 'JSONEachRow' })
        .then(async (r) => Number(((await r.json()) as { n: string }[])[0]?.n ?? 0))
        .catch(() => 0);
      if (rowsAtKill >= 300) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill('SIGKILL');
    await exited;
    expect(rowsAtKill).toBeGreaterThan(0);
    const s = await startService(c);
    await drain(c, [s]);
    await s.stop();
    details.killRowsAtKill = rowsAtKill;
    details.killReplayed = s.stats.panes.replayed;
    outcomes.kill = await outcome(c);
    expect(outcomes.kill.aggregates.length).toBeGreaterThan(rowsAtKill);
    expect(outcomes.kill).toEqual(outcomes.one);
  });

  /** Rows in the run's window_aggregates table now (0 while the table or the server is missing). */
  const rowsNow = (c: Config): Promise<number> =>
    ch
      .query({ query: `SELECT count() AS n FROM ${c.clickhouse.database}.window_aggregates`, format: 'JSONEachRow' })
      .then(async (r) => Number(((await r.json()) as { n: string }[])[0]?.n ?? 0))
      .catch(() => 0);

  /** Waits until `c`'s run has written at least `rows` aggregate rows: mid-stream, long before the end. */
  async function untilRows(c: Config, rows: number): Promise<number> {
    const until = Date.now() + 90_000;
    let n = 0;
    while (Date.now() < until && (n = await rowsNow(c)) < rows) await new Promise((r) => setTimeout(r, 100));
    return n;
  }

  it('ClickHouse stopped for 60 s mid-stream, then restarted: consumption waits, buffers stay bounded, and the outcome is exactly the uninterrupted one', async () => {
    const port = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const a = srv.address();
        srv.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
      });
    });
    const c = configFor('chdown');
    c.metrics = { ...c.metrics, port };
    // The outage starts when stage 2 closes the first window that ends past the middle of the
    // input, before that window's rows are written: `infra down` runs synchronously inside the
    // hook, so however fast stage 2 is, it cannot write them (or anything after them) first.
    // Waiting for rows to appear and then stopping raced with stage 2 finishing everything
    // while ClickHouse shut down.
    const times = logs.map((l) => l.timestamp).sort((a, b) => a - b);
    const middle = times[Math.floor(times.length / 2)] as number;
    let windowsBefore = 0;
    let stoppedAt = 0;
    const s = await startService(c, {
      onWindow: (_r, w) => {
        if (stoppedAt > 0) return;
        if (w.windowEnd <= middle) {
          windowsBefore++;
          return;
        }
        execFileSync(process.execPath, [bin, 'infra', 'down', '--only', 'clickhouse'], { stdio: 'ignore', timeout: 60_000 });
        stoppedAt = Date.now();
      },
    });
    const samples: { buffered: number; received: number; healthy: boolean; busyMs: number }[] = [];
    let readyz = '';
    let readyStatus = 0;
    try {
      const waitUntil = Date.now() + 90_000;
      while (stoppedAt === 0 && Date.now() < waitUntil) {
        if (s.fatal()) throw s.fatal() as Error;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(stoppedAt, 'stage 2 closed no window past the middle of the input within 90 s').toBeGreaterThan(0);
      // Mid-stream: windows closed before, more to come.
      expect(windowsBefore).toBeGreaterThan(0);
      const outageEnds = stoppedAt + 60_000;
      while (Date.now() < outageEnds) {
        if (s.fatal()) throw s.fatal() as Error;
        samples.push({ buffered: s.clickhouse.bufferedRows, received: s.stats.windows.received, healthy: s.clickhouse.healthy, busyMs: s.windows.busyMs() });
        await new Promise((r) => setTimeout(r, 1_000));
      }
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      readyStatus = res.status;
      readyz = await res.text();
    } finally {
      await infraUp({ services: ['clickhouse'] });
    }
    await drain(c, [s]);
    await s.stop();
    // During the outage: not ready, and saying why; ClickHouse marked unhealthy; stage 2 stopped
    // reading (backpressure) once its batch in hand was waiting; rows in memory bounded.
    expect(readyStatus).toBe(503);
    expect(readyz).toMatch(/clickhouse is failing/);
    const late = samples.slice(-30);
    expect(late.every((x) => !x.healthy)).toBe(true);
    expect((late.at(-1) as { received: number }).received - (late[0] as { received: number }).received).toBe(0);
    expect(Math.min(...late.map((x) => x.busyMs))).toBeGreaterThan(25_000);
    details.chdownMaxBuffered = Math.max(...samples.map((x) => x.buffered));
    expect(details.chdownMaxBuffered).toBeLessThan(2 * c.clickhouse.batch_rows + 20_000);
    expect(s.clickhouse.stats.retries).toBeGreaterThan(3);
    outcomes.chdown = await outcome(c);
    expect(outcomes.chdown).toEqual(outcomes.one);
  }, 400_000);

  it('ClickHouse slow, with some replies past the request timeout: consumption waits on it, buffers stay bounded, duplicate inserts collapse, and the outcome is exactly the uninterrupted one', async () => {
    // ClickHouse behind a proxy that holds every reply chunk 200 ms, and every fourth one 3 s:
    // past the 2 s request timeout, so the client gives up on inserts that the server has applied,
    // and retries them. Requests pass at once; each socket's chunks keep their order.
    let slow = false;
    let chunks = 0;
    const proxy = await delayingProxy(() => Number(new URL(localEndpoints.clickhouseUrl).port), () => (!slow ? 0 : ++chunks % 4 === 0 ? 3_000 : 200));
    const c = configFor('chslow');
    c.clickhouse = { ...c.clickhouse, url: `http://127.0.0.1:${proxy.port}`, request_timeout_ms: 2_000 };
    const s = await startService(c);
    const samples: number[] = [];
    try {
      slow = true;
      const sampler = setInterval(() => samples.push(s.clickhouse.bufferedRows), 250);
      try {
        await drain(c, [s], 280_000);
      } finally {
        clearInterval(sampler);
      }
      details.chslowRetries = s.clickhouse.stats.retries;
      details.chslowMaxBuffered = Math.max(...samples);
    } finally {
      await s.stop();
      await proxy.close();
    }
    // Replies held past the timeout were retried, and bounded what was held in memory meanwhile.
    expect(details.chslowRetries).toBeGreaterThan(0);
    expect(details.chslowMaxBuffered).toBeLessThan(2 * c.clickhouse.batch_rows + 20_000);
    // The retried inserts had been applied: the tables hold duplicates, which FINAL collapses.
    const db = c.clickhouse.database;
    const rows = async (query: string): Promise<number> => Number(((await (await ch.query({ query, format: 'JSONEachRow' })).json()) as { n: string }[])[0]?.n);
    const raw = (await rows(`SELECT count() AS n FROM ${db}.window_aggregates`)) + (await rows(`SELECT count() AS n FROM ${db}.verdicts`));
    const final = (await rows(`SELECT count() AS n FROM ${db}.window_aggregates FINAL`)) + (await rows(`SELECT count() AS n FROM ${db}.verdicts FINAL`));
    expect(raw).toBeGreaterThan(final);
    outcomes.chslow = await outcome(c);
    expect(outcomes.chslow).toEqual(outcomes.one);
  }, 300_000);

  it('Kafka restarted mid-stream: the pipeline resumes, with exactly the outcome of the uninterrupted run', async () => {
    const c = configFor('kafkarestart');
    const s = await startService(c);
    try {
      const rowsAtStop = await untilRows(c, 1);
      expect(rowsAtStop).toBeGreaterThan(0);
      expect(rowsAtStop).toBeLessThan((outcomes.one as Outcome).aggregates.length / 2);
      details.kafkaRestartMessagesAtStop = s.stats.panes.messages;
      await infraDown({ services: ['kafka'] });
      await new Promise((r) => setTimeout(r, 5_000));
      expect(s.fatal()).toBeNull();
    } finally {
      await infraUp();
    }
    await drain(c, [s], 240_000);
    await s.stop();
    details.kafkaRestartStageRetries = s.panes.stats.retries + s.windows.stats.retries + s.rules.stats.retries;
    outcomes.kafkarestart = await outcome(c);
    expect(outcomes.kafkarestart).toEqual(outcomes.one);
  }, 400_000);

  it('two processes, one leaving mid-stream: exactly the outcome of one process', async () => {
    // Its own input topic, written while both processes run, so that both take part.
    const c = configFor('two');
    c.input.topic = `${topic}-two`;
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic: c.input.topic, numPartitions: 3, replicationFactor: 1 }] });
    await admin.disconnect();
    const a = await startService(c);
    const b = await startService(c);
    // Both hold partitions of every stage before the first record is written.
    const joined = Date.now() + 60_000;
    while (Date.now() < joined && ![a, b].every((s) => s.panes.partitions.length > 0 && s.windows.partitions.length > 0)) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const messages = logs.map((log) => ({ key: log.client_ip, value: encodeSingleObject(requestLogType, log) }));
    const chunk = Math.ceil(messages.length / 16);
    let left = false;
    for (let i = 0; i < messages.length; i += chunk) {
      await producer.send({ topic: c.input.topic, acks: -1, messages: messages.slice(i, i + chunk) });
      await new Promise((r) => setTimeout(r, 500));
      // Past half way, once both have closed windows, one process leaves (the stream goes on meanwhile).
      if (!left && i >= messages.length / 2 && a.stats.windows.windowsClosed > 0 && b.stats.windows.windowsClosed > 0) {
        details.twoWindowsA = a.stats.windows.windowsClosed;
        details.twoWindowsB = b.stats.windows.windowsClosed;
        details.twoMessagesB = b.stats.panes.messages;
        void b.stop();
        left = true;
      }
    }
    await b.stop();
    await producer.disconnect();
    expect(details.twoWindowsA).toBeGreaterThan(0);
    expect(details.twoWindowsB).toBeGreaterThan(0);
    expect(details.twoMessagesB).toBeGreaterThan(0);
    await drain(c, [a]);
    await a.stop();
    outcomes.two = await outcome(c);
    expect(outcomes.two).toEqual(outcomes.one);
  });

  it('with input.from_beginning false, counts only the records written after it joined', async () => {
    // The shared input topic already holds the whole traffic; this group has no offsets on it.
    const base = configFor('late');
    const c: Config = { ...base, input: { ...base.input, from_beginning: false } };
    const s = await startService(c);
    try {
      const joined = Date.now() + 60_000;
      while (Date.now() < joined && s.panes.partitions.length < 3) await new Promise((r) => setTimeout(r, 100));
      expect(s.panes.partitions.length).toBe(3);
      // kafkajs resolves "latest" when it first fetches after joining.
      await new Promise((r) => setTimeout(r, 3_000));
      const fresh = logs.slice(0, 900).map((l, i) => ({ ...l, request_id: `late-${i}`, timestamp: l.timestamp + 3_600_000 }));
      const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      await producer.send({ topic, acks: -1, messages: fresh.map((log) => ({ key: log.client_ip, value: encodeSingleObject(requestLogType, log) })) });
      await producer.disconnect();
      await drain(c, [s], 90_000, false);
      expectExactAggregates(await aggregatesInClickHouse(ch, c.clickhouse.database), fresh, expect);
    } finally {
      await s.stop();
    }
  });
});

