import { randomBytes } from 'node:crypto';
import { connect, createServer, type Socket } from 'node:net';
import type { IHeaders, Kafka } from 'kafkajs';
import type { RequestLog } from '../../schemas/index.js';

export const JA4_BROWSER = 't13d1516h2_8daaf6152771_02713d6af862';
export const JA4_BOT = 't13d190900_9dc949149365_97f8aa674fd9';
export const JA4_APP = 't13d1715h2_5b57614c22b0_3d5424432f57';
export const T0 = Date.UTC(2026, 10, 1, 0, 0, 0);
export const BURST_START = T0 + 6 * 60_000;

/** Deterministic traffic: steady baseline for 8 minutes, and a 60 s burst from one ASN×JA4 pair at minute 6. */
export function traffic(): RequestLog[] {
  const logs: RequestLog[] = [];
  let n = 0;
  const push = (ts: number, asn: number, ja4: string | null, ip: string, extra: Partial<RequestLog> = {}): void => {
    logs.push({
      timestamp: ts, request_id: `it-${n++}`, client_ip: ip, asn, country: 'DE', ja4, user_agent: 'Mozilla/5.0', method: 'GET',
      host: 'shop.example', path: `/p/${n % 40}`, status: 200, response_bytes: 1000 + (n % 300), protocol: 'HTTP/2', challenge: 'NONE', ...extra,
    });
  };
  for (let s = 0; s < 480; s++) {
    const t = T0 + s * 1000;
    push(t + 100, 64512, JA4_BROWSER, `10.0.0.${(s % 20) + 1}`);
    push(t + 600, 64512, JA4_BROWSER, `10.0.0.${((s * 7) % 20) + 1}`);
    if (s % 5 === 0) push(t + 300, 64512, JA4_BOT, `10.9.0.${(s % 3) + 1}`);
    push(t + 200, 3320, JA4_BROWSER, `2001:db8::${(s % 50) + 1}`, { protocol: 'HTTP/3' });
    if (s % 2 === 0) push(t + 400, 3320, null, `192.0.2.${(s % 9) + 1}`, { protocol: 'HTTP/1.1' });
    push(t + 500, 4_200_000_001, JA4_APP, `198.51.100.${(s % 30) + 1}`, { status: s % 10 === 0 ? 404 : 200 });
    if (t >= BURST_START && t < BURST_START + 60_000) {
      for (let k = 0; k < 40; k++) {
        push(t + k * 20 + 1, 64512, JA4_BOT, `203.0.113.${(k * 5 + s) % 200}`, { method: 'POST', path: '/login', status: 401 });
      }
    }
  }
  return logs.sort((a, b) => a.timestamp - b.timestamp);
}

/** Brute force of CONTRACTS §2: every window [s, s+60 s), s a multiple of 10 s, that contains the record. */
export function expectedWindows(logs: RequestLog[]): Map<string, { requests: number; ips: Set<string> }> {
  const out = new Map<string, { requests: number; ips: Set<string> }>();
  for (const r of logs) {
    const entities: [string, string][] = [['asn', String(r.asn)]];
    if (r.ja4) entities.push(['ja4', r.ja4], ['asn_ja4', `${r.asn}|${r.ja4}`]);
    for (let s = Math.floor(r.timestamp / 10_000) * 10_000; s > r.timestamp - 60_000; s -= 10_000) {
      for (const [type, entity] of entities) {
        const key = `${type}/${entity}/${s}`;
        const agg = out.get(key) ?? { requests: 0, ips: new Set<string>() };
        agg.requests++;
        agg.ips.add(r.client_ip);
        out.set(key, agg);
      }
    }
  }
  return out;
}

/** Creates `topic` (3 partitions) and writes `messages` to it, acknowledged by every replica, in batches of 1000. */
export async function produceToNewTopic(kafka: Kafka, topic: string, messages: { key: string | null; value: Buffer | null }[]): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 3, replicationFactor: 1 }] });
  await admin.disconnect();
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  for (let i = 0; i < messages.length; i += 1000) await producer.send({ topic, acks: -1, messages: messages.slice(i, i + 1000) });
  await producer.disconnect();
}

export async function readTopic(kafka: Kafka, topic: string, expected: number, timeoutMs = 30_000) {
  const consumer = kafka.consumer({ groupId: `it-reader-${randomBytes(4).toString('hex')}` });
  const got: { key: string | null; value: Buffer | null; headers: IHeaders }[] = [];
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      got.push({ key: message.key?.toString() ?? null, value: message.value, headers: message.headers ?? {} });
    },
  });
  const until = Date.now() + timeoutMs;
  while (got.length < expected && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
  await new Promise((r) => setTimeout(r, 500)); // anything beyond `expected` would show up now
  await consumer.disconnect();
  return got;
}

/** Reads `table` of `database` under FINAL as a map `type/entity/window_start_ms` → {requests, ips}. */
export async function aggregatesInClickHouse(
  ch: { query: (q: { query: string; format: 'JSONEachRow' }) => Promise<{ json: () => Promise<unknown> }> },
  database: string,
): Promise<Map<string, { requests: number; ips: number; we: number }>> {
  const rs = await ch.query({
    query: `SELECT entity_type, entity, toUnixTimestamp(window_start) AS ws, toUnixTimestamp(window_end) AS we, requests, unique_ips FROM ${database}.window_aggregates FINAL`,
    format: 'JSONEachRow',
  });
  const rows = (await rs.json()) as { entity_type: string; entity: string; ws: string; we: string; requests: string; unique_ips: string }[];
  return new Map(rows.map((r) => [`${r.entity_type}/${r.entity}/${Number(r.ws) * 1000}`, { requests: Number(r.requests), ips: Number(r.unique_ips), we: Number(r.we) }]));
}

/** Asserts ClickHouse holds exactly the brute-force aggregates of `logs`. */
export function expectExactAggregates(
  got: Map<string, { requests: number; ips: number; we: number }>,
  logs: RequestLog[],
  expect: (v: unknown, m?: string) => { toEqual: (x: unknown) => void; toBe: (x: unknown) => void },
): void {
  const want = expectedWindows(logs);
  expect(got.size).toBe(want.size);
  for (const [key, w] of want) {
    expect(got.get(key), key).toEqual({ requests: w.requests, ips: w.ips.size, we: Number(key.split('/')[2]) / 1000 + 60 });
  }
}

/** A proxy of {@link delayingProxy}. */
export interface DelayingProxy {
  port: number;
  /** Reply chunks held so far (a hold > 0). */
  held(): number;
  close(): Promise<void>;
}

/**
 * A TCP proxy on a free 127.0.0.1 port to `target()` (asked at each connection): requests pass
 * at once; each reply chunk is held `holdMs()` ms, asked as it arrives, each socket's chunks in
 * order. Closing either side closes both. For slow-service fault tests.
 */
export async function delayingProxy(target: () => number, holdMs: () => number): Promise<DelayingProxy> {
  const sockets = new Set<Socket>();
  let held = 0;
  const proxy = createServer((client) => {
    const upstream = connect(target(), '127.0.0.1');
    for (const x of [client, upstream]) {
      sockets.add(x);
      x.on('close', () => {
        sockets.delete(x);
        client.destroy();
        upstream.destroy();
      });
      x.on('error', () => undefined);
    }
    client.pipe(upstream);
    let queue = Promise.resolve();
    upstream.on('data', (chunk: Buffer) => {
      const hold = holdMs();
      if (hold > 0) held++;
      queue = queue.then(() => new Promise((r) => setTimeout(r, hold))).then(() => void (client.destroyed || client.write(chunk)));
    });
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
  return {
    port: (proxy.address() as { port: number }).port,
    held: () => held,
    close: () =>
      new Promise<void>((r) => {
        proxy.close(() => r());
        for (const x of sockets) x.destroy();
      }),
  };
}
