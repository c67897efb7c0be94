import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { replay } from '../cli/replay.js';
import { simulateToFile, type SimulationSummary } from '../cli/simulate.js';
import { parseConfig } from '../config.js';

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));
const T0 = 1_793_491_200_000;
const readLines = (p: string): Record<string, unknown>[] =>
  readFileSync(p, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

/** The fixture's records, as make-fixtures.py writes them. */
function fixtureRecords(): { t: number; asn: number; ip: string }[] {
  return Array.from({ length: 600 }, (_, i) => ({ t: T0 + i * 1000 + (i % 7) * 10, asn: 64500 + (i % 2), ip: `192.0.2.${(i % 3) + 1}` }));
}

describe('replay of .avro files written by another Avro implementation (fastavro)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bw-replay-'));
  const expected = new Map<string, { requests: number; ips: Set<string> }>();
  for (const r of fixtureRecords()) {
    for (let s = Math.floor(r.t / 10_000) * 10_000; s > r.t - 60_000; s -= 10_000) {
      const k = `${r.asn}/${s}`;
      const e = expected.get(k) ?? { requests: 0, ips: new Set<string>() };
      e.requests++;
      e.ips.add(r.ip);
      expected.set(k, e);
    }
  }

  it.each(['null', 'deflate', 'snappy', 'zstandard', 'old-writer'])('reads the %s file with exact per-window aggregates', async (name) => {
    const out = (f: string) => join(dir, `${name}-${f}.ndjson`);
    const s = await replay({
      input: join(fixtures, `fastavro-${name}.avro`), verdicts: out('v'), rules: out('r'), aggregates: out('a'),
      config: parseConfig({}), progress: false,
    });
    expect(s).toMatchObject({ records: 600, rejected: 0, late: 0 });
    const rows = readLines(out('a'));
    const asnRows = rows.filter((r) => r.entity_type === 'asn');
    expect(asnRows).toHaveLength(expected.size);
    for (const r of asnRows) {
      const e = expected.get(`${r.entity}/${r.window_start}`);
      expect(r, `${r.entity}@${r.window_start}`).toMatchObject({ requests: e?.requests, unique_ips: e?.ips.size, window_end: (r.window_start as number) + 60_000 });
    }
    // The old writer has no ja4: its records resolve to ja4 = null, so there are no ja4 entities.
    const ja4Rows = rows.filter((r) => r.entity_type === 'ja4');
    if (name === 'old-writer') expect(ja4Rows).toEqual([]);
    else expect(ja4Rows.length).toBeGreaterThan(0);
  });

  it('rejects a file that is not Avro with a clear error', async () => {
    await expect(
      replay({ input: join(fixtures, 'make-fixtures.py'), verdicts: join(dir, 'x'), rules: join(dir, 'y'), config: parseConfig({}), progress: false }),
    ).rejects.toThrow(/invalid magic bytes|magic/i);
  });
});

describe('replay output follows the contract', { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'bw-replay-'));
  const input = join(dir, 'sim.avro');
  let sim: SimulationSummary;

  beforeAll(async () => {
    sim = await simulateToFile({ out: input, seed: 11, startMs: T0, durationMs: 10 * 60_000, baseRps: 120, scenarios: ['credential_stuffing', 'l7_flood'], codec: 'snappy' });
  }, 120_000);

  async function run(tag: string, allow: string[] = []) {
    const paths = { verdicts: join(dir, `${tag}-v.ndjson`), rules: join(dir, `${tag}-r.ndjson`), aggregates: join(dir, `${tag}-a.ndjson`) };
    const summary = await replay({ input, ...paths, config: parseConfig({ rules: { allow } }), progress: false });
    return { summary, paths };
  }

  it('writes anomalous verdicts with reasons, and a rule per attack with expiry', async () => {
    const { paths } = await run('a');
    const verdicts = readLines(paths.verdicts);
    expect(verdicts.length).toBeGreaterThan(0);
    for (const v of verdicts) {
      expect(v).toMatchObject({ entity_type: expect.stringMatching(/^(asn|ja4|asn_ja4)$/), anomalous: true });
      expect(typeof v.entity).toBe('string');
      expect(v.window_end).toBe((v.window_start as number) + 60_000);
      expect(v.score).toBeGreaterThanOrEqual(0);
      expect(v.score).toBeLessThanOrEqual(1);
      expect(Object.values(v.detectors as Record<string, number>).every((x) => x >= 0 && x <= 1)).toBe(true);
      expect((v.reasons as string[])[0]).toMatch(/^requests \d+ in 60 s vs typical/);
    }
    const rules = readLines(paths.rules);
    for (const b of sim.bursts) {
      const id = `asn_ja4:${b.match.asn}|${b.match.ja4}`;
      const mine = rules.filter((r) => r.rule_id === id);
      expect(mine[0], b.name).toMatchObject({ op: 'upsert', match: { asn: b.match.asn, ja4: b.match.ja4 }, action: 'challenge', mode: 'enforce' });
      expect(mine[0]?.created_at as number).toBeGreaterThanOrEqual(b.startMs);
      expect(mine[0]?.created_at as number).toBeLessThanOrEqual(b.startMs + 2 * 10_000 + 60_000);
      expect(mine.at(-1)).toMatchObject({ op: 'delete' });
      for (const r of mine) expect(r.expires_at as number).toBeGreaterThan(r.created_at as number);
    }
    const aggregates = readLines(paths.aggregates);
    expect(Object.keys(aggregates[0] ?? {})).toEqual(expect.arrayContaining(['entity_type', 'entity', 'window_start', 'window_end', 'requests', 'unique_ips']));
  });

  it('is deterministic: the same file and config give byte-identical output', async () => {
    const a = await run('det1');
    const b = await run('det2');
    for (const k of ['verdicts', 'rules', 'aggregates'] as const) {
      expect(readFileSync(b.paths[k]).equals(readFileSync(a.paths[k])), k).toBe(true);
    }
  });

  it('never makes a rule for an allowlisted ASN', async () => {
    const asn = sim.bursts[0]?.match.asn as number;
    const { paths } = await run('allow', [`asn:${asn}`]);
    const rules = readLines(paths.rules);
    expect(rules.filter((r) => (r.match as { asn?: number }).asn === asn)).toEqual([]);
    expect(rules.length).toBeGreaterThan(0); // the other attack still gets its rule
  });
});
