/**
 * Windows section of `npm run bench`: throughput of the pane engine (consumers/windows.ts)
 * against the naive per-window engine (bench/naive-windows.ts) on the same in-memory stream,
 * at a 10 s and a 1 s slide. Records are generated before timing, so neither decoding nor
 * generation is measured; a run covers add, closing, converting closed windows to rows, and
 * draining them. Runs alternate and the best of each is kept, so ratios cancel the machine's noise.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DEFAULT_SCENARIOS, generateTraffic } from '../cli/traffic.js';
import { hashString } from '../consumers/sketches.js';
import { SlidingWindows, windowConfigSchema, type ClosedWindow } from '../consumers/windows.js';
import type { RequestLog } from '../schemas/index.js';
import { NaiveWindows } from './naive-windows.js';

/** Options of {@link runWindowsBench}; every count is of records. */
export interface WindowsBenchOptions {
  /** Records in the stream. Default 300 000. */
  records?: number;
  /**
   * The naive engine at a 1 s slide costs ~0.7 ms per record here, so it runs on the first
   * `prefixRecords` of the stream only, as does everything compared with it. Default 30 000.
   */
  prefixRecords?: number;
  /** Records of the exact self-check (every row compared, before timing). Default 20 000. */
  checkRecords?: number;
  /** Alternating rounds; the best of each case is kept. Default 3. */
  rounds?: number;
  /** Benign requests per second of event time. Default 2 000. */
  baseRps?: number;
  /** Simulator seed. Default 7. */
  seed?: number;
  /** Where progress lines go. Default stderr. */
  log?: (line: string) => void;
}

type EngineName = 'panes' | 'naive';
type StreamName = 'full' | 'prefix';

/** One measured case: an engine at a slide on a stream. */
export interface WindowsCase {
  stream: StreamName;
  records: number;
  slideMs: number;
  engine: EngineName;
  /** Wall time of each run, ms, in round order. */
  ms: number[];
  windows: number;
  rows: number;
  /** Checksum of every row's window, type, entity, requests and unique_ips, in output order. */
  checksum: string;
}

/** What {@link runWindowsBench} measured. */
export interface WindowsBenchResult {
  seed: number;
  baseRps: number;
  sizeMs: number;
  latenessMs: number;
  rounds: number;
  records: number;
  prefixRecords: number;
  /** Event time covered by the stream and by its prefix, s. */
  eventSeconds: number;
  prefixEventSeconds: number;
  late: number;
  /** The exact self-check: rows compared at each slide. */
  check: { records: number; slides: { slideMs: number; windows: number; rows: number }[] };
  cases: WindowsCase[];
}

const SIZE_MS = 60_000;
const LATENESS_MS = 5_000;
const COARSE_MS = 10_000;
const FINE_MS = 1_000;
/** Records between two drains, as a consumer batch would. */
const DRAIN_EVERY = 1024;

/** `global.gc` without `--expose-gc` on the command line (npm run bench starts plain node). */
export function gcFunction(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

function generate(records: number, seed: number, baseRps: number): RequestLog[] {
  const startMs = Date.UTC(2026, 10, 1);
  // A run just long enough for `records`, so that the default attacks (placed in the last
  // third of a short run) are inside the stream.
  const durationMs = Math.ceil((records / baseRps) * 1000);
  const out: RequestLog[] = [];
  for (const e of generateTraffic({ seed, startMs, durationMs, baseRps, scenarios: [...DEFAULT_SCENARIOS] })) {
    if (out.length >= records) break;
    out.push(e.log);
  }
  return out;
}

interface Engine {
  add(r: RequestLog): unknown;
  drain(): ClosedWindow[];
  closeAll(): ClosedWindow[];
  readonly stats: { late: number };
}

function makeEngine(engine: EngineName, slideMs: number): Engine {
  if (engine === 'naive') return new NaiveWindows(SIZE_MS, slideMs, LATENESS_MS);
  return new SlidingWindows(windowConfigSchema.parse({ size_ms: SIZE_MS, slide_ms: slideMs, allowed_lateness_ms: LATENESS_MS }));
}

const TYPE_CODE = { asn: 1, ja4: 2, asn_ja4: 3 } as const;

/** Two 32-bit lanes folded over every row, order-sensitive: a cheap guard that each timed run produced the checked output. */
class RowChecksum {
  private a = 0x811c9dc5;
  private b = 0x2545f491;
  private fold(x: number): void {
    this.a = Math.imul(this.a ^ (x | 0), 0x01000193);
    this.b = Math.imul((this.b ^ (x | 0)) + 0x7f4a7c15, 0x85ebca6b);
    this.b ^= this.b >>> 13;
  }
  window(w: ClosedWindow): void {
    this.fold(w.windowStart % 0x100000000);
    this.fold(Math.floor(w.windowStart / 0x100000000));
    for (const r of w.rows) {
      this.fold(TYPE_CODE[r.entity_type]);
      this.fold(hashString(r.entity));
      this.fold(r.requests);
      this.fold(r.unique_ips);
    }
  }
  get value(): string {
    return `${(this.a >>> 0).toString(16).padStart(8, '0')}${(this.b >>> 0).toString(16).padStart(8, '0')}`;
  }
}

/** One run over the first `n` records; `keep` receives the closed windows (self-check) or is null (timed runs). */
function pass(engine: Engine, records: RequestLog[], n: number, keep: ClosedWindow[] | null): { ms: number; windows: number; rows: number; checksum: string } {
  let windows = 0;
  let rows = 0;
  const sum = new RowChecksum();
  const take = (ws: ClosedWindow[]): void => {
    for (const w of ws) {
      // The pane engine also emits windows without rows inside gaps of event time (so that
      // detectors learn the zeros); the naive engine has no such windows. Only data counts.
      if (w.rows.length === 0) continue;
      windows++;
      rows += w.rows.length;
      sum.window(w);
      if (keep) keep.push(w);
    }
  };
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    engine.add(records[i] as RequestLog);
    if (i % DRAIN_EVERY === DRAIN_EVERY - 1) take(engine.drain());
  }
  take(engine.closeAll());
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  return { ms, windows, rows, checksum: sum.value };
}

/** Compares windows with rows, and requests and unique_ips of every entity in every window; returns the rows compared, or throws naming the first difference. */
export function compareWindows(slideMs: number, panes: ClosedWindow[], naive: ClosedWindow[]): number {
  const where = `windows self-check at slide ${slideMs} ms`;
  if (panes.length !== naive.length) throw new Error(`${where}: the pane engine closed ${panes.length} windows, naive ${naive.length}`);
  let rows = 0;
  for (let i = 0; i < panes.length; i++) {
    const p = panes[i] as ClosedWindow;
    const n = naive[i] as ClosedWindow;
    if (p.windowStart !== n.windowStart || p.windowEnd !== n.windowEnd) {
      throw new Error(`${where}: window ${i} is [${p.windowStart}, ${p.windowEnd}) in the pane engine, [${n.windowStart}, ${n.windowEnd}) in naive`);
    }
    const of = (w: ClosedWindow): Map<string, string> => new Map(w.rows.map((r) => [`${r.entity_type}/${r.entity}`, `requests=${r.requests} unique_ips=${r.unique_ips}`]));
    const a = of(p);
    const b = of(n);
    for (const [k, v] of a) {
      const u = b.get(k);
      if (u !== v) throw new Error(`${where}: window ${p.windowStart} ${k}: pane engine ${v}, naive ${u ?? 'no row'}`);
    }
    for (const k of b.keys()) if (!a.has(k)) throw new Error(`${where}: window ${p.windowStart} ${k}: no row in the pane engine, one in naive`);
    rows += a.size;
  }
  return rows;
}

function span(records: RequestLog[], n: number): number {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) {
    const t = (records[i] as RequestLog).timestamp;
    if (t < lo) lo = t;
    if (t > hi) hi = t;
  }
  return (hi - lo) / 1000;
}

/** Runs the windows section; throws if the two engines disagree on any row. */
export function runWindowsBench(opts: WindowsBenchOptions = {}): WindowsBenchResult {
  const n = opts.records ?? 300_000;
  const rounds = opts.rounds ?? 3;
  const baseRps = opts.baseRps ?? 2_000;
  const seed = opts.seed ?? 7;
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const gc = gcFunction();

  log(`windows: generating ${n} records (seed ${seed}, ${baseRps} benign req/s, default scenarios)…`);
  const records = generate(n, seed, baseRps);
  const prefix = Math.min(opts.prefixRecords ?? 30_000, records.length);
  const checkN = Math.min(opts.checkRecords ?? 20_000, records.length);

  // The exact self-check first (it also warms both engines up): identical rows, or no figures at all.
  const check: WindowsBenchResult['check'] = { records: checkN, slides: [] };
  for (const slideMs of [COARSE_MS, FINE_MS]) {
    const p: ClosedWindow[] = [];
    const q: ClosedWindow[] = [];
    const pe = makeEngine('panes', slideMs);
    const ne = makeEngine('naive', slideMs);
    pass(pe, records, checkN, p);
    pass(ne, records, checkN, q);
    const rows = compareWindows(slideMs, p, q);
    if (pe.stats.late !== ne.stats.late) throw new Error(`windows self-check at slide ${slideMs} ms: ${pe.stats.late} late records in the pane engine, ${ne.stats.late} in naive`);
    check.slides.push({ slideMs, windows: p.length, rows });
    log(`windows: self-check at slide ${slideMs} ms on ${checkN} records passed: ${p.length} windows, ${rows} rows with identical requests and unique_ips`);
    gc();
  }

  const cases: WindowsCase[] = [];
  const add = (stream: StreamName, slideMs: number, engine: EngineName): void => {
    cases.push({ stream, records: stream === 'full' ? records.length : prefix, slideMs, engine, ms: [], windows: 0, rows: 0, checksum: '' });
  };
  add('full', COARSE_MS, 'panes');
  add('full', COARSE_MS, 'naive');
  add('full', FINE_MS, 'panes');
  add('prefix', COARSE_MS, 'panes');
  add('prefix', COARSE_MS, 'naive');
  add('prefix', FINE_MS, 'panes');
  add('prefix', FINE_MS, 'naive');

  let late = 0;
  for (let round = 0; round < rounds; round++) {
    const parts: string[] = [];
    for (const c of cases) {
      gc();
      const engine = makeEngine(c.engine, c.slideMs);
      const r = pass(engine, records, c.records, null);
      if (c.stream === 'full') late = engine.stats.late;
      const peer = cases.find((o) => o !== c && o.stream === c.stream && o.slideMs === c.slideMs && o.checksum !== '');
      const expected = c.checksum || peer?.checksum;
      if (expected && expected !== r.checksum) {
        throw new Error(`windows: ${c.engine} at slide ${c.slideMs} ms on ${c.records} records emitted rows with checksum ${r.checksum}, expected ${expected}`);
      }
      c.checksum = r.checksum;
      c.windows = r.windows;
      c.rows = r.rows;
      c.ms.push(r.ms);
      parts.push(`${c.engine}@${c.slideMs / 1000}s/${c.stream} ${r.ms.toFixed(0)} ms`);
    }
    log(`windows: round ${round + 1}/${rounds}: ${parts.join(', ')}`);
  }
  gc();
  return {
    seed,
    baseRps,
    sizeMs: SIZE_MS,
    latenessMs: LATENESS_MS,
    rounds,
    records: records.length,
    prefixRecords: prefix,
    eventSeconds: span(records, records.length),
    prefixEventSeconds: span(records, prefix),
    late,
    check,
    cases,
  };
}

const best = (xs: number[]): number => Math.min(...xs);
const int = (x: number): string => Math.round(x).toLocaleString('en-US');

/** The markdown section of {@link runWindowsBench}'s figures; `runLine` (when and where it ran) opens it. */
export function windowsMarkdown(r: WindowsBenchResult, runLine = ''): string {
  const find = (stream: StreamName, slideMs: number, engine: EngineName): WindowsCase | undefined =>
    r.cases.find((c) => c.stream === stream && c.slideMs === slideMs && c.engine === engine);
  const t = (c: WindowsCase | undefined): number => (c ? best(c.ms) : Number.NaN);
  const nf = find('prefix', FINE_MS, 'naive');
  const naiveFineCost = nf ? `${((best(nf.ms) * 1000) / nf.records / 1000).toFixed(2)} ms` : 'too much';
  const lines: string[] = [];
  lines.push('## Sliding windows: pane engine against naive per-window aggregation', '');
  if (runLine) lines.push(runLine, '');
  lines.push(
    `Stream: ${int(r.records)} simulated request logs held in memory (\`generateTraffic\`, seed ${r.seed}, ${r.baseRps} benign req/s plus the three default attacks, ` +
      `${r.eventSeconds.toFixed(0)} s of event time, ${r.late} late records), generated before timing. Windows of ${r.sizeMs / 1000} s, allowed lateness ` +
      `${r.latenessMs / 1000} s, one partition, entity types asn, ja4 and asn×ja4. A run is \`add\` of every record, \`drain\` every ${DRAIN_EVERY} records and ` +
      `\`closeAll\` at the end, so closing windows and building their rows is included. Best of ${r.rounds} alternating rounds, a forced GC before each run.`,
    '',
  );
  lines.push(
    'The **pane engine** (consumers/windows.ts) adds each record to one pane per entity and slides panes into each window over blocks aligned to the window length (one merge per window and entity); ' +
      'the **naive engine** (bench/naive-windows.ts) adds each record to every one of the size / slide windows that contain it. ' +
      `The naive engine at a 1 s slide costs ${naiveFineCost} per record on this machine (${r.sizeMs / FINE_MS} windows × 3 aggregates), so the 1 s comparison runs on the **prefix**: ` +
      `the first ${int(r.prefixRecords)} records (${r.prefixEventSeconds.toFixed(0)} s of event time` +
      (r.prefixEventSeconds * 1000 < r.sizeMs ? ', shorter than one window, so every window closes in `closeAll`)' : ')') +
      '. Everything else runs on the **full** stream. Windows without rows (the pane engine emits them inside gaps of event time) are not counted.',
    '',
  );
  lines.push(
    `Self-check before timing: on the first ${int(r.check.records)} records, both engines closed the same windows with identical \`requests\` and \`unique_ips\` for every entity ` +
      `(${r.check.slides.map((s) => `slide ${s.slideMs / 1000} s: ${s.windows} windows, ${int(s.rows)} rows`).join('; ')}); every timed run then had to reproduce its peer's row checksum. ` +
      'The bench aborts otherwise.',
    '',
  );
  lines.push('| stream | slide | engine | windows | output rows | best time | records/s | µs per record |', '|---|---|---|---|---|---|---|---|');
  for (const c of r.cases) {
    const b = best(c.ms);
    lines.push(
      `| ${c.stream} (${int(c.records)}) | ${c.slideMs / 1000} s | ${c.engine} | ${int(c.windows)} | ${int(c.rows)} | ${b.toFixed(0)} ms | ${int(c.records / (b / 1000))} | ${((b * 1000) / c.records).toFixed(2)} |`,
    );
  }
  lines.push('');
  lines.push('| ratio (same stream, same process) | value | reads as |', '|---|---|---|');
  const speed = (stream: StreamName, slideMs: number): void => {
    const x = t(find(stream, slideMs, 'naive')) / t(find(stream, slideMs, 'panes'));
    if (!Number.isFinite(x)) return;
    lines.push(`| panes / naive throughput, slide ${slideMs / 1000} s, ${stream} | **${x.toFixed(2)}** | panes ${x >= 1 ? `${x.toFixed(1)}× faster` : `${(1 / x).toFixed(1)}× slower`} |`);
  };
  speed('full', COARSE_MS);
  speed('prefix', COARSE_MS);
  speed('prefix', FINE_MS);
  const k = COARSE_MS / FINE_MS;
  for (const stream of ['full', 'prefix'] as const) {
    const pc = t(find(stream, FINE_MS, 'panes')) / t(find(stream, COARSE_MS, 'panes'));
    const fine = find(stream, FINE_MS, 'panes');
    const coarse = find(stream, COARSE_MS, 'panes');
    if (Number.isFinite(pc) && fine && coarse) {
      lines.push(`| panes per-record cost, slide 1 s / 10 s, ${stream} | ${pc.toFixed(2)} | size / slide ${k}× up; output rows ${(fine.rows / coarse.rows).toFixed(2)}× up |`);
      const pr = t(fine) / fine.rows / (t(coarse) / coarse.rows);
      lines.push(`| panes cost per output row, slide 1 s / 10 s, ${stream} | **${pr.toFixed(2)}** | 1.00: the engine's cost follows its output, not size / slide |`);
    }
    const nc = t(find(stream, FINE_MS, 'naive')) / t(find(stream, COARSE_MS, 'naive'));
    if (Number.isFinite(nc)) lines.push(`| naive per-record cost, slide 1 s / 10 s, ${stream} | ${nc.toFixed(2)} | |`);
  }
  lines.push('');
  lines.push(
    `Output is inherent: every closed window emits a row per entity it holds, so ${k}× more windows means about ${k}× more rows for either engine. ` +
      "The pane engine's own scaling is therefore read from its cost per output row at the two slides: close to 1 means that neither its work per record " +
      'nor its work per row grows with size / slide.',
    '',
  );
  lines.push(
    'All runs (ms): ' + r.cases.map((c) => `${c.engine} ${c.slideMs / 1000} s ${c.stream}: ${c.ms.map((x) => x.toFixed(0)).join(', ')}`).join('; ') + '.',
    '',
  );
  return lines.join('\n');
}
