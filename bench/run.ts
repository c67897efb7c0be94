/**
 * `npm run bench`: five sections, in this order, written to bench/RESULTS.md. The machine is
 * shared and noisy, so every figure is a ratio against a peer run made in the same process (or
 * script) on the same input, with absolute figures for scale.
 *
 * - replay: replay throughput against decoding alone on the same ≥1M-event Avro file. Runs
 *   alternate (decode, replay, decode, replay, …) and the best of each is kept.
 * - windows: the pane window engine against a naive per-window one on the same in-memory
 *   stream, at 10 s and 1 s slides (bench/windows-bench.ts).
 * - cardinality: memory and heavy hitters under a flood of new fingerprints, in a child
 *   process so that its resident memory is its own (bench/cardinality.ts).
 * - forest: the isolation forest against scikit-learn (PyPI, in a venv under .burstwatch/) and
 *   ml-isolation-forest: AUC on labelled sets, fit time, scoring throughput (bench/forest-bench.ts).
 * - temporal: every univariate detector on labelled series of spikes, bursts, steps and ramps,
 *   with a NAB-style score (bench/temporal-bench.ts).
 * - detectors: the entity scorer's cost per closed window, population off, fits inline and fits
 *   in a worker, against the window engine's time for the same windows (bench/detector-cost.ts).
 * - edge: the edge subscriber's match against a linear scan, change latency from EdgeRuleSink to a
 *   subscriber on the local Kafka, verdict-to-rule latency on the live service, and bootstrap time
 *   (bench/edge-bench.ts).
 * - clickhouse: verdict rows/s through ClickHouseSink against a bare client insert of the same rows
 *   (bench/clickhouse-bench.ts).
 * - e2e: the live service on the local Kafka and ClickHouse: throughput against a no-op kafkajs
 *   consumer on the same topic, one process against two in one group, and recovery after SIGKILL
 *   against an uninterrupted run (bench/e2e-bench.ts; needs dist/, it starts `burstwatch run` children).
 *
 * Knobs (environment): BENCH_SECTIONS (comma-separated, default all; sections not run keep
 * their previous text in RESULTS.md), BENCH_ROUNDS (default 3, replay and windows),
 * BENCH_EVENTS (replay file, default 1 000 000), BENCH_WINDOWS_RECORDS (default 300 000),
 * BENCH_WINDOWS_PREFIX (default 30 000), BENCH_WINDOWS_CHECK (default 20 000), and the
 * BENCH_CARDINALITY_* knobs of bench/cardinality.ts, BENCH_FOREST_ROWS (rows scored for
 * throughput, default 1 000 000), and the BENCH_E2E_* knobs of bench/e2e-bench.ts.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readAvroFile, writeAvroFile } from '../cli/avro-file.js';
import { replay } from '../cli/replay.js';
import { DEFAULT_SCENARIOS, generateTraffic } from '../cli/traffic.js';
import { parseConfig } from '../config.js';
import { validateRequestLog } from '../schemas/codec.js';
import { runClickHouseBench } from './clickhouse-bench.js';
import { codeState as codeStateOf } from './code-state.js';
import { runDetectorCostBench } from './detector-cost.js';
import { runE2eBench } from './e2e-bench.js';
import { runEdgeBench } from './edge-bench.js';
import { runForestBench } from './forest-bench.js';
import { runTemporalBench } from './temporal-bench.js';
import { runWindowsBench, windowsMarkdown } from './windows-bench.js';

const SECTIONS = ['replay', 'windows', 'cardinality', 'forest', 'temporal', 'detectors', 'edge', 'clickhouse', 'e2e'] as const;
type Section = (typeof SECTIONS)[number];

const EVENTS = Number(process.env.BENCH_EVENTS ?? 1_000_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const RATE = 2_000; // benign requests per second of event time
const here = fileURLToPath(new URL('.', import.meta.url));
const benchDir = here.includes('/dist/') ? join(here, '..', '..', 'bench') : here;
const dataDir = join(benchDir, 'data');
const file = join(dataDir, `requests-${EVENTS}.avro`);
const resultsFile = join(benchDir, 'RESULTS.md');
const machine = `Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}`;
const today = (): string => new Date().toISOString().slice(0, 10);
const codeState = (): string => codeStateOf(join(benchDir, '..'));

function selectedSections(): Section[] {
  const raw = process.env.BENCH_SECTIONS;
  if (raw === undefined || raw.trim() === '') return [...SECTIONS];
  const names = raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const n of names) {
    if (!(SECTIONS as readonly string[]).includes(n)) {
      throw new Error(`BENCH_SECTIONS: unknown section '${n}'; accepted: ${SECTIONS.join(', ')} (comma-separated)`);
    }
  }
  return SECTIONS.filter((s) => names.includes(s));
}

/** The BENCH_* variables that are set and concern a section, for its footnote. */
function knobs(prefixes: string[]): string {
  const set = Object.entries(process.env)
    .filter(([k, v]) => v !== undefined && prefixes.some((p) => k === p || k.startsWith(`${p}_`)))
    .map(([k, v]) => `\`${k}=${v}\``);
  return set.length ? `Knobs set: ${set.join(', ')}.` : 'Default knobs.';
}

// ---------------------------------------------------------------------------------------
// Replay against decoding alone

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

async function replaySection(): Promise<string> {
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
  return `## Replay against decoding alone

Run on ${today()}; ${machine}. Best of ${ROUNDS} alternating rounds each, in the same process on the same file.

File: ${records.toLocaleString('en-US')} simulated request logs (\`generateTraffic\`, seed 7, ${RATE} benign req/s plus the three default attacks),
Avro object container, null codec, ${(statSync(file).size / 1e6).toFixed(0)} MB.

| run | what it does | best time | events/s |
|---|---|---|---|
| decode | read the container file, resolve to the reader schema, validate each record | ${best(decodeMs).toFixed(0)} ms | ${Math.round(decodeRate).toLocaleString('en-US')} |
| replay | the same, then sliding windows (60 s / 10 s) on asn, ja4 and asn×ja4, scoring, rules, NDJSON out | ${best(replayMs).toFixed(0)} ms | ${Math.round(replayRate).toLocaleString('en-US')} |

**replay / decode throughput ratio: ${ratio.toFixed(2)}** (1.00 would mean the pipeline costs nothing beyond decoding).

Replay produced ${s.windows} windows, ${s.verdicts.toLocaleString('en-US')} verdicts (${s.anomalous} anomalous), ${s.ruleUpserts} rule upserts and ${s.ruleDeletes} deletes; ${s.late} late records.
Peak resident memory of the bench process by the end of this section (it runs first): ${maxRssMb.toFixed(0)} MB.

All rounds (ms): decode ${decodeMs.map((x) => x.toFixed(0)).join(', ')}; replay ${replayMs.map((x) => x.toFixed(0)).join(', ')}.
`;
}

// ---------------------------------------------------------------------------------------
// Windows and cardinality

function windowsSection(): string {
  const num = (name: string): number | undefined => (process.env[name] === undefined ? undefined : Number(process.env[name]));
  const r = runWindowsBench({
    records: num('BENCH_WINDOWS_RECORDS'),
    prefixRecords: num('BENCH_WINDOWS_PREFIX'),
    checkRecords: num('BENCH_WINDOWS_CHECK'),
    rounds: ROUNDS,
  });
  return windowsMarkdown(r, `Run on ${today()}; ${machine}.`);
}

/** Heap limit of the second cardinality run, MB: what docs/scaling.md tells operators to set. */
const CAPPED_HEAP_MB = Number(process.env.BENCH_CARDINALITY_HEAP_MB ?? 256);

/**
 * The cardinality section: bench/cardinality.js twice, each in its own process (its RSS is its
 * own), with Node's default heap limit and with the heap capped as operators are told to run
 * it. V8 sizes its heap to the allocation rate, not to what is live, so the first shows what an
 * unconfigured process holds and the second what the state itself needs.
 */
async function cardinalitySection(): Promise<string> {
  const runs: [string, string[]][] = [
    ["Node's default heap limit", ['--expose-gc']],
    [`Heap capped at ${CAPPED_HEAP_MB} MB (\`--max-old-space-size=${CAPPED_HEAP_MB}\`, as docs/scaling.md recommends)`, ['--expose-gc', `--max-old-space-size=${CAPPED_HEAP_MB}`]],
  ];
  const parts = [
    TITLES.cardinality,
    '',
    'Two runs of the same child, one with Node as it comes and one with the heap capped. V8 grows its heap with the allocation rate rather than with ' +
      'what is live, so a flood of ten times the records makes a default process hold garbage for longer; the live state (after a forced full GC) ' +
      'is what the window engine and the scorer hold, and the capped run shows the resident memory that state needs.',
  ];
  for (const [title, flags] of runs) {
    const md = await cardinalityChild(flags);
    parts.push('', `### ${title}`, '', md.slice(md.indexOf('\n') + 1).trim());
  }
  return `${parts.join('\n')}\n`;
}

/** Runs bench/cardinality.js with `flags` and returns its markdown. */
function cardinalityChild(flags: string[]): Promise<string> {
  const script = join(here, 'cardinality.js');
  if (!existsSync(script)) return Promise.reject(new Error(`${script} not found: run the bench from dist/ (npm run bench builds it)`));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...flags, script], { stdio: ['ignore', 'pipe', 'inherit'], env: process.env });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve(Buffer.concat(chunks).toString('utf8'));
      else reject(new Error(`cardinality child exited with ${signal ?? `code ${code}`}`));
    });
  });
}

// ---------------------------------------------------------------------------------------
// RESULTS.md

const TITLES: Record<Section, string> = {
  replay: '## Replay against decoding alone',
  windows: '## Sliding windows: pane engine against naive per-window aggregation',
  cardinality: '## Cardinality attack: memory and heavy hitters under a flood of new fingerprints',
  forest: '## Isolation forest against scikit-learn and ml-isolation-forest',
  temporal: '## Temporal detectors on a labelled evaluation of spikes, bursts, steps and ramps',
  detectors: '## Detector cost per scored window',
  edge: '## Edge subscriber: match throughput, change latency, bootstrap',
  clickhouse: '## ClickHouse insert throughput for verdict rows',
  e2e: '## Live service end to end: throughput against a no-op consumer, scale-out, recovery after SIGKILL',
};

/** The sections of the current RESULTS.md, to keep those not run this time. */
function previousSections(): Partial<Record<Section, string>> {
  if (!existsSync(resultsFile)) return {};
  const text = readFileSync(resultsFile, 'utf8');
  const out: Partial<Record<Section, string>> = {};
  for (const m of text.matchAll(/<!-- bench:(\w+) -->\n([\s\S]*?)<!-- \/bench:\1 -->/g)) {
    if ((SECTIONS as readonly string[]).includes(m[1] as string)) out[m[1] as Section] = m[2] as string;
  }
  // A file written before sections had markers held the replay section only.
  if (!out.replay) {
    const at = text.indexOf(TITLES.replay);
    if (at >= 0) out.replay = text.slice(at);
  }
  return out;
}

function writeResults(done: Partial<Record<Section, string>>): string {
  const previous = previousSections();
  const parts = [
    '# Benchmark results',
    '',
    'Written by `npm run bench` (bench/run.ts). Sections: replay against decoding, sliding windows against a naive engine, a cardinality attack, the isolation forest, the temporal detectors, and the detectors\' cost per window ' +
      '(`BENCH_SECTIONS=windows npm run bench` reruns one and keeps the others). The machine is shared and noisy, so the figures to read are ' +
      'the **ratios** between runs made in the same process (or script) on the same input; absolute figures are given for scale only. ' +
      'Each section says when and on what it ran.',
    '',
  ];
  for (const s of SECTIONS) {
    const body = done[s] ?? previous[s] ?? `${TITLES[s]}\n\nNot run yet: \`BENCH_SECTIONS=${s} npm run bench\`.\n`;
    parts.push(`<!-- bench:${s} -->`, body.trimEnd(), '', `<!-- /bench:${s} -->`, '');
  }
  const md = parts.join('\n');
  writeFileSync(resultsFile, md);
  return md;
}

const selected = selectedSections();
const done: Partial<Record<Section, string>> = {};
let failed = false;
const t0 = Date.now();
for (const s of selected) {
  const started = Date.now();
  process.stderr.write(`bench: section ${s}…\n`);
  try {
    let body: string;
    if (s === 'replay') body = (await replaySection()) + `\n${knobs(['BENCH_EVENTS', 'BENCH_ROUNDS'])}`;
    else if (s === 'windows') body = windowsSection() + `\n${knobs(['BENCH_WINDOWS', 'BENCH_ROUNDS'])}`;
    else if (s === 'cardinality') body = (await cardinalitySection()) + `\n${knobs(['BENCH_CARDINALITY'])}`;
    else if (s === 'forest') body = `${TITLES.forest}\n\nRun on ${today()}; ${machine}.\n\n${runForestBench(benchDir)}\n${knobs(['BENCH_FOREST'])}`;
    else if (s === 'temporal') body = `${TITLES.temporal}\n\nRun on ${today()}; ${machine}.\n\n${runTemporalBench()}\n${knobs(['BENCH_TEMPORAL'])}`;
    else if (s === 'edge') body = `${TITLES.edge}\n\nRun on ${today()}; ${machine}.\n\n${await runEdgeBench()}\n${knobs(['BENCH_EDGE'])}`;
    else if (s === 'clickhouse') body = `${TITLES.clickhouse}\n\nRun on ${today()}; ${machine}.\n\n${await runClickHouseBench()}\n${knobs(['BENCH_CLICKHOUSE'])}`;
    else if (s === 'e2e') body = `${TITLES.e2e}\n\nRun on ${today()}; ${machine}.\n\n${await runE2eBench()}\n${knobs(['BENCH_E2E'])}`;
    else {
      const script = new URL(here.includes('/dist/') ? '../detectors/population-worker.js' : '../dist/detectors/population-worker.js', import.meta.url);
      body = `${TITLES.detectors}\n\nRun on ${today()}; ${machine}.\n\n${await runDetectorCostBench(script)}\n${knobs(['BENCH_DETECTORS', 'BENCH_ROUNDS'])}`;
    }
    done[s] = `${body.trimEnd()} Code measured: ${codeState()}. Section wall time: ${((Date.now() - started) / 1000).toFixed(0)} s.\n`;
  } catch (err) {
    // A failed section (the windows self-check, a crashed child) aborts the bench, but what ran is written.
    const message = err instanceof Error ? err.message : String(err);
    done[s] = `${TITLES[s]}\n\n**ABORTED on ${today()}: ${message}**\n`;
    failed = true;
    process.stderr.write(`bench: section ${s} failed: ${message}\n`);
    break;
  }
}
const md = writeResults(done);
process.stdout.write(md);
process.stderr.write(`bench: ${selected.join(', ')} in ${((Date.now() - t0) / 1000).toFixed(0)} s; wrote ${resultsFile}\n`);
if (failed) process.exitCode = 1;
