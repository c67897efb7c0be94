import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import avro from 'avsc';
import { CommanderError } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import type { RequestLog } from '../schemas/index.js';
import { readAvroFile, writeAvroFile } from './avro-file.js';
import {
  parseDuration,
  parseScenarios,
  parseStart,
  readLabelsFile,
  simulateCommand,
  simulateToFile,
  simulateToKafka,
} from './simulate.js';
import { DEFAULT_SCENARIOS, generateTraffic, type TrafficOptions } from './traffic.js';

const START = Date.UTC(2026, 10, 1, 12, 0, 0);
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'burstwatch-simulate-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function traffic(over: Partial<TrafficOptions> = {}): RequestLog[] {
  const o: TrafficOptions = { seed: 3, startMs: START, durationMs: 2 * 60_000, baseRps: 300, scenarios: [...DEFAULT_SCENARIOS], ...over };
  return [...generateTraffic(o)].map((e) => e.log);
}

async function readAll(path: string): Promise<RequestLog[]> {
  const out: RequestLog[] = [];
  for await (const r of readAvroFile(path)) out.push(r);
  return out;
}

describe('writeAvroFile / readAvroFile', () => {
  it('round-trips a two-minute run exactly', async () => {
    const logs = traffic();
    const path = join(dir, 'two-minutes.avro');
    const progress: number[] = [];
    const n = await writeAvroFile(path, logs, { onProgress: (k) => progress.push(k) });
    expect(n).toBe(logs.length);
    expect(progress.at(-1)).toBe(logs.length);
    const back = await readAll(path);
    expect(back).toHaveLength(logs.length);
    expect(back).toEqual(logs);
  }, 30_000);

  it('accepts async sources and the null codec', async () => {
    const logs = traffic({ durationMs: 10_000 });
    async function* source(): AsyncGenerator<RequestLog> {
      for (const l of logs) yield l;
    }
    const path = join(dir, 'async.avro');
    expect(await writeAvroFile(path, source(), { codec: 'null' })).toBe(logs.length);
    expect(await readAll(path)).toEqual(logs);
  });

  it('resolves files written with an older writer schema (no ja4, no challenge) to defaults', async () => {
    const old = avro.Type.forSchema({
      type: 'record',
      name: 'RequestLog',
      namespace: 'io.burstwatch',
      fields: [
        { name: 'timestamp', type: 'long' },
        { name: 'request_id', type: 'string' },
        { name: 'client_ip', type: 'string' },
        { name: 'asn', type: 'long' },
        { name: 'country', type: 'string' },
        { name: 'user_agent', type: 'string' },
        { name: 'method', type: 'string' },
        { name: 'host', type: 'string' },
        { name: 'path', type: 'string' },
        { name: 'status', type: 'int' },
        { name: 'response_bytes', type: 'long' },
        { name: 'protocol', type: 'string' },
      ],
    });
    const logs = traffic({ durationMs: 5_000 });
    const path = join(dir, 'old-writer.avro');
    const encoder = new avro.streams.BlockEncoder(old, { codec: 'deflate' });
    const written = pipeline(encoder, createWriteStream(path));
    for (const l of logs) {
      const { ja4: _ja4, challenge: _challenge, ...rest } = l;
      encoder.write(rest);
    }
    encoder.end();
    await written;
    const back = await readAll(path);
    expect(back).toHaveLength(logs.length);
    back.forEach((r, i) => {
      expect(r).toEqual({ ...logs[i], ja4: null, challenge: 'NONE' });
    });
  });

  it('rejects a missing file and an unwritable path instead of hanging', async () => {
    await expect(readAll(join(dir, 'nope.avro'))).rejects.toThrow(/ENOENT/);
    await expect(writeAvroFile(join(dir, 'no-such-dir', 'x.avro'), traffic({ durationMs: 1000 }))).rejects.toThrow(/ENOENT/);
  });

  it('rejects a record that does not fit the schema', async () => {
    const bad = { ...traffic({ durationMs: 1000 })[0]!, status: 'ok' } as unknown as RequestLog;
    await expect(writeAvroFile(join(dir, 'bad.avro'), [bad])).rejects.toThrow();
  });
});

describe('simulateToFile', () => {
  it('writes the file and its labels, and the summary matches both', async () => {
    const out = join(dir, 'sim.avro');
    const labelsPath = `${out}.labels.json`;
    const progress: number[] = [];
    const summary = await simulateToFile({
      out,
      labelsPath,
      seed: 9,
      startMs: START,
      durationMs: 2 * 60_000,
      baseRps: 100,
      scenarios: [...DEFAULT_SCENARIOS],
      onProgress: (p) => progress.push(p.fraction),
    });
    const back = await readAll(out);
    expect(summary.events).toBe(back.length);
    expect(progress.at(-1)).toBe(1);
    expect(summary.aborted).toBe(false);
    const bursts = await readLabelsFile(labelsPath);
    expect(bursts.map((b) => b.name)).toEqual([...DEFAULT_SCENARIOS]);
    for (const b of bursts) {
      const matching = back.filter((r) => r.asn === b.match.asn && r.ja4 === b.match.ja4 && r.timestamp >= b.startMs && r.timestamp < b.endMs);
      expect(b.requests).toBe(summary.attackEvents[b.name]);
      expect(matching.length).toBeGreaterThanOrEqual(b.requests!);
    }
    expect(summary.benignEvents + Object.values(summary.attackEvents).reduce((a, c) => a + c, 0)).toBe(summary.events);
  });

  it('stops early on abort and says so', async () => {
    const ac = new AbortController();
    const summary = await simulateToFile({
      out: join(dir, 'aborted.avro'),
      seed: 1,
      startMs: START,
      durationMs: 10 * 60_000,
      baseRps: 300,
      scenarios: [],
      signal: ac.signal,
      onProgress: (p) => {
        if (p.events >= 20_000) ac.abort();
      },
    });
    expect(summary.aborted).toBe(true);
    expect(summary.events).toBe(20_000);
    expect(await readAll(join(dir, 'aborted.avro'))).toHaveLength(20_000);
  });
});

describe('simulateToKafka configuration', () => {
  it('refuses confluent framing without a registry before connecting', async () => {
    const base = { topic: 't', seed: 1, startMs: START, durationMs: 1000, baseRps: 1, scenarios: [] };
    await expect(simulateToKafka({ ...base, encoding: 'confluent' })).rejects.toThrow(ConfigError);
    await expect(simulateToKafka({ ...base, encoding: 'mixed' })).rejects.toThrow(/schema registry/);
    await expect(simulateToKafka({ ...base, partitions: 0 })).rejects.toThrow(ConfigError);
  });
});

describe('simulate command line', () => {
  const run = async (args: string[]): Promise<void> => {
    const cmd = simulateCommand().exitOverride().configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
    await cmd.parseAsync(args, { from: 'user' });
  };

  it('requires exactly one of --out and --topic', async () => {
    await expect(run([])).rejects.toThrow(/one of --out <file.avro> or --topic <name> is required/);
    await expect(run(['--out', 'a.avro', '--topic', 't'])).rejects.toThrow(CommanderError);
    await expect(run(['--out', 'a.avro', '--encoding', 'plain'])).rejects.toThrow(/cannot be used with/);
    await expect(run(['--topic', 't', '--codec', 'null'])).rejects.toThrow(/cannot be used with/);
    await expect(run(['--out', 'a.avro', '--scenario', 'ddos'])).rejects.toThrow(/unknown scenario 'ddos'/);
    await expect(run(['--out', 'a.avro', '--duration', '10'])).rejects.toThrow(/not a duration/);
  });

  it('writes a file, its default labels and a JSON summary on stdout', async () => {
    const out = join(dir, 'cli.avro');
    const chunks: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string) => {
      chunks.push(String(s));
      return true;
    }) as typeof process.stdout.write;
    try {
      await run(['--out', out, '--duration', '30s', '--rate', '50', '--start', String(START), '--scenario', 'scraper,l7_flood']);
    } finally {
      process.stdout.write = write;
    }
    const summary = JSON.parse(chunks.join('')) as { events: number; attack_events: Record<string, number>; labels: string };
    expect(summary.labels).toBe(`${out}.labels.json`);
    expect(Object.keys(summary.attack_events)).toEqual(['scraper', 'l7_flood']);
    expect(await readAll(out)).toHaveLength(summary.events);
    expect(JSON.parse(await readFile(summary.labels, 'utf8')).start_ms).toBe(START);
  });

  it('parses durations, start times and scenario lists', () => {
    expect(parseDuration('10m')).toBe(600_000);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('1.5h')).toBe(5_400_000);
    expect(parseDuration('250ms')).toBe(250);
    expect(() => parseDuration('10')).toThrow();
    const now = Date.UTC(2026, 0, 1, 10, 30, 42);
    expect(parseStart(undefined, 600_000, now)).toBe(Date.UTC(2026, 0, 1, 10, 20, 0));
    expect(parseStart('now', 600_000, now)).toBe(now);
    expect(parseStart('1793608800000', 1, now)).toBe(1793608800000);
    expect(parseStart('2026-11-01T12:00:00Z', 1, now)).toBe(START);
    expect(() => parseStart('yesterday', 1, now)).toThrow(ConfigError);
    expect(parseScenarios(undefined)).toEqual([...DEFAULT_SCENARIOS]);
    expect(parseScenarios(['none'])).toEqual([]);
    expect(parseScenarios(['scraper,flash_crowd', 'scraper'])).toEqual(['scraper', 'flash_crowd']);
    expect(() => parseScenarios(['nope'])).toThrow(ConfigError);
  });
});
