/**
 * `npm run bench`: replay throughput against decoding alone, on the same ≥1M-event Avro file in
 * the same process, so that the ratio (the figure that matters) cancels out the machine's noise.
 * Runs alternate (decode, replay, decode, replay, …) and the best of each is kept.
 * Results go to bench/RESULTS.md.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readAvroFile, writeAvroFile } from '../cli/avro-file.js';
import { replay } from '../cli/replay.js';
import { DEFAULT_SCENARIOS, generateTraffic } from '../cli/traffic.js';
import { parseConfig } from '../config.js';
import { validateRequestLog } from '../schemas/codec.js';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 1_000_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const RATE = 2_000; // benign requests per second of event time
const here = fileURLToPath(new URL('.', import.meta.url));
const benchDir = here.includes('/dist/') ? join(here, '..', '..', 'bench') : here;
const dataDir = join(benchDir, 'data');
const file = join(dataDir, `requests-${EVENTS}.avro`);

async function ensureFile(): Promise<void> {
  if (existsSync(file)) return;
  mkdirSync(dataDir, { recursive: true });
  const start = Date.UTC(2026, 10, 1);
  const durationMs = Math.ceil(EVENTS / RATE / 60) * 60_000 + 60_000;
  function* firstN() {
    let n = 0;
    for (const e of generateTraffic({ seed: 7, startMs: start, durationMs, baseRps: RATE, scenarios: [...DEFAULT_SCENARIOS] })) {
      if (n++ >= EVENTS) return;
      yield e.log;
    }
  }
  process.stderr.write(`bench: writing ${EVENTS} events to ${file}…\n`);
  await writeAvroFile(file, firstN(), { codec: 'null' });
}

async function decodeOnly(): Promise<number> {
  let n = 0;
  for await (const r of readAvroFile(file)) {
    validateRequestLog(r);
    n++;
  }
  return n;
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = process.hrtime.bigint();
  const value = await fn();
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, value };
}

await ensureFile();
const out = mkdtempSync(join(tmpdir(), 'burstwatch-bench-'));
const config = parseConfig({});
const decodeMs: number[] = [];
const replayMs: number[] = [];
let records = 0;
let summary: Awaited<ReturnType<typeof replay>> | null = null;
for (let round = 0; round < ROUNDS; round++) {
  const d = await timed(decodeOnly);
  decodeMs.push(d.ms);
  records = d.value;
  const r = await timed(() => replay({ input: file, verdicts: join(out, 'v.ndjson'), rules: join(out, 'r.ndjson'), config, progress: false }));
  replayMs.push(r.ms);
  summary = r.value;
  process.stderr.write(`bench: round ${round + 1}/${ROUNDS}: decode ${d.ms.toFixed(0)} ms, replay ${r.ms.toFixed(0)} ms\n`);
}
rmSync(out, { recursive: true, force: true });
const best = (xs: number[]): number => Math.min(...xs);
const decodeRate = records / (best(decodeMs) / 1000);
const replayRate = records / (best(replayMs) / 1000);
const ratio = replayRate / decodeRate;
const maxRssMb = process.resourceUsage().maxRSS / 1024;
const s = summary as NonNullable<typeof summary>;
const md = `# Benchmark results

Written by \`npm run bench\` (bench/run.ts) on ${new Date().toISOString().slice(0, 10)}; Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}.
The machine is shared and noisy, so the figure to read is the **ratio** of the two runs made in the same process on the same file;
absolute rates are given for scale only. Best of ${ROUNDS} alternating rounds each.

## Replay against decoding alone

File: ${records.toLocaleString('en-US')} simulated request logs (\`generateTraffic\`, seed 7, ${RATE} benign req/s plus the three default attacks),
Avro object container, null codec, ${(statSync(file).size / 1e6).toFixed(0)} MB.

| run | what it does | best time | events/s |
|---|---|---|---|
| decode | read the container file, resolve to the reader schema, validate each record | ${best(decodeMs).toFixed(0)} ms | ${Math.round(decodeRate).toLocaleString('en-US')} |
| replay | the same, then sliding windows (60 s / 10 s) on asn, ja4 and asn×ja4, scoring, rules, NDJSON out | ${best(replayMs).toFixed(0)} ms | ${Math.round(replayRate).toLocaleString('en-US')} |

**replay / decode throughput ratio: ${ratio.toFixed(2)}** (1.00 would mean the pipeline costs nothing beyond decoding).

Replay produced ${s.windows} windows, ${s.verdicts.toLocaleString('en-US')} verdicts (${s.anomalous} anomalous), ${s.ruleUpserts} rule upserts and ${s.ruleDeletes} deletes; ${s.late} late records.
Peak resident memory of the whole bench process: ${maxRssMb.toFixed(0)} MB.

All rounds (ms): decode ${decodeMs.map((x) => x.toFixed(0)).join(', ')}; replay ${replayMs.map((x) => x.toFixed(0)).join(', ')}.
`;
writeFileSync(join(benchDir, 'RESULTS.md'), md);
process.stdout.write(md);
