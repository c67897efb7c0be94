/**
 * Cardinality section of `npm run bench`, run by bench/run.ts as a child process so that the
 * resident memory it samples is its own (`node --expose-gc dist/bench/cardinality.js`; it also
 * runs alone and prints its markdown section on stdout, progress on stderr).
 *
 * Streams, in event time, benign traffic (the simulator, no scenarios) plus a flood of fresh
 * fingerprints (every attack request has a never-seen JA4 and a fresh client IP, from a
 * handful of ASNs) through the window engine and the entity scorer with the default
 * configuration, records generated on the fly (never stored). Resident memory, tracked
 * entities, scorer sizes and eviction counters are sampled every 30 s of event time.
 * The same benign stream is first run alone; the busiest benign entities' window request
 * counts must be the same with and without the flood (heavy hitters survive the caps).
 *
 * Bars: resident memory flat under the flood (mean of the last third of samples within 15% of
 * the middle third's) and below 400 MB; the busiest benign ASN's counts unchanged.
 */
import { cpus } from 'node:os';
import { generateTraffic } from '../cli/traffic.js';
import { ENTITY_TYPES, type EntityType } from '../consumers/aggregates.js';
import { SlidingWindows, type ClosedWindow } from '../consumers/windows.js';
import { parseConfig } from '../config.js';
import { EntityScorer } from '../detectors/entity-scorer.js';
import type { RequestLog } from '../schemas/index.js';

/** Minutes of event time of each pass. Default 6. */
const MINUTES = Number(process.env.BENCH_CARDINALITY_MINUTES ?? 6);
/** New fingerprints (attack requests) per minute of event time. Default 1 000 000. */
const NEW_PER_MINUTE = Number(process.env.BENCH_CARDINALITY_NEW_PER_MINUTE ?? 1_000_000);
/** Benign requests per second of event time. Default 2 000. */
const BENIGN_RPS = Number(process.env.BENCH_CARDINALITY_BENIGN_RPS ?? 2_000);
/**
 * Wall-clock budget of the flood pass, s (0: none). An engine slower than the load would
 * otherwise hold `npm run bench` for many minutes; a pass cut short says so. Default 180.
 */
const MAX_WALL_S = Number(process.env.BENCH_CARDINALITY_MAX_WALL_S ?? 180);
/** 0 runs the windows without the scorer (to tell their memory apart). Default 1. */
const WITH_SCORER = (process.env.BENCH_CARDINALITY_SCORER ?? '1') !== '0';
/** Configuration overrides as JSON (e.g. '{"windows":{"max_entities_per_pane":5000}}'); default none, the defaults. */
const CONFIG_JSON = process.env.BENCH_CARDINALITY_CONFIG ?? '{}';
/** Event time between two samples, ms. */
const SAMPLE_MS = 30_000;
const SEED = 7;
const START_MS = Date.UTC(2026, 10, 1);
/** Documentation ASNs (RFC 5398): never in the simulated world, so no benign entity shares them. */
const ATTACK_ASNS = [64496, 64497, 64498, 64499, 64500];
const ATTACK_UAS = ['python-requests/2.31.0', 'Go-http-client/2.0', 'okhttp/4.12.0', 'curl/8.5.0'];
const RSS_LIMIT_MB = 400;
const FLAT_TOLERANCE = 0.15;

function* benignStream(durationMs: number): Generator<RequestLog> {
  for (const e of generateTraffic({ seed: SEED, startMs: START_MS, durationMs, baseRps: BENIGN_RPS, scenarios: [] })) yield e.log;
}

const hex = (n: number, width: number): string => n.toString(16).padStart(width, '0');

/** Evenly spaced attack requests, each with a JA4 and a client IP never used before. */
function* attackStream(durationMs: number, perMinute: number): Generator<RequestLog> {
  const step = 60_000 / perMinute;
  for (let i = 0; ; i++) {
    const t = Math.floor(START_MS + i * step);
    if (t >= START_MS + durationMs) return;
    // JA4-shaped (section a, then two 12-hex hashes); the counter makes every one new.
    const mixed = Math.imul(i ^ (i >>> 15), 0x2c1b3c6d) >>> 0;
    yield {
      timestamp: t,
      request_id: `flood-${i.toString(36)}`,
      client_ip: `${11 + (i >>> 24)}.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`,
      asn: ATTACK_ASNS[i % ATTACK_ASNS.length] as number,
      country: 'XX',
      ja4: `t13d1516h2_${hex(i, 12)}_${hex(mixed, 12)}`,
      user_agent: ATTACK_UAS[i % ATTACK_UAS.length] as string,
      method: 'GET',
      host: 'www.shop.example',
      path: '/',
      status: 200,
      response_bytes: 512,
      protocol: 'HTTP/2',
      challenge: 'NONE',
    };
  }
}

/** Merges two streams by event time of their heads (each is nearly ordered). */
function* merge(a: Generator<RequestLog>, b: Generator<RequestLog>): Generator<RequestLog> {
  let x = a.next();
  let y = b.next();
  while (!x.done || !y.done) {
    if (y.done || (!x.done && x.value.timestamp <= y.value.timestamp)) {
      yield x.value as RequestLog;
      x = a.next();
    } else {
      yield y.value;
      y = b.next();
    }
  }
}

interface Sample {
  eventS: number;
  wallS: number;
  records: number;
  rssMb: number;
  heapMb: number;
  /** Memory outside the V8 heap (typed-array stores: sketches, detector rings), MB. */
  externalMb: number;
  /** Heap and external memory still in use after a forced full GC (what the state holds), MB; NaN without --expose-gc. */
  liveHeapMb: number;
  liveExternalMb: number;
  trackedEntities: number;
  openPanes: number;
  scorer: Record<EntityType, number>;
  evictedEntities: number;
  evictedRequests: number;
  scorerEvictions: number;
  windowsClosed: number;
}

interface PassResult {
  name: string;
  records: number;
  wallMs: number;
  /** Event time reached, s from the start; less than the run when the wall budget cut it short. */
  eventS: number;
  /** Whether the wall budget stopped the pass before the end of its stream. */
  cut: boolean;
  /** Peak resident memory of the process at the end of the pass (getrusage), MB. */
  maxRssMb: number;
  /** Largest sampled RSS during the pass, MB. */
  peakSampledRssMb: number;
  samples: Sample[];
  /** Starts of the windows closed, in order. */
  windowStarts: number[];
  verdicts: number;
  anomalous: number;
  late: number;
  /** Window request counts, by type, keyed `windowStart entity`: every entity (benign pass) or the watched ones. */
  counts: Record<EntityType, Map<string, number>>;
}

const mb = (b: number): number => b / (1024 * 1024);

/**
 * One pass; `watch` (entity sets by type) limits which counts are kept, null keeps all. With a
 * wall budget (ms, 0 for none) the pass stops feeding records when it runs out, and drops the
 * windows still open rather than closing them half full.
 */
function runPass(name: string, stream: Iterable<RequestLog>, watch: Record<EntityType, Set<string>> | null, budgetMs: number, gc: (() => void) | null): PassResult {
  gc?.();
  const config = parseConfig(JSON.parse(CONFIG_JSON) as unknown);
  const windows = new SlidingWindows(config.windows);
  // As replay does: nothing checkpoints here, so tracking changes would only grow a set of every key seen.
  const scorer = new EntityScorer(config.scorer, 'bench', { trackChanges: false, slideMs: config.windows.slide_ms });
  const counts: Record<EntityType, Map<string, number>> = { asn: new Map(), ja4: new Map(), asn_ja4: new Map() };
  const samples: Sample[] = [];
  const windowStarts: number[] = [];
  let verdicts = 0;
  let anomalous = 0;
  let records = 0;
  let peak = 0;
  const t0 = process.hrtime.bigint();
  const wall = (): number => Number(process.hrtime.bigint() - t0) / 1e6;
  const score = (ws: ClosedWindow[]): void => {
    for (const w of ws) {
      windowStarts.push(w.windowStart);
      if (WITH_SCORER) {
        for (const v of scorer.scoreWindow(w)) {
          verdicts++;
          if (v.anomalous) anomalous++;
        }
      }
      for (const r of w.rows) {
        if (watch && !watch[r.entity_type].has(r.entity)) continue;
        counts[r.entity_type].set(`${w.windowStart} ${r.entity}`, r.requests);
      }
    }
  };
  const sample = (eventMs: number): void => {
    // RSS as the process has it first; then a full GC tells the live state from the GC's slack.
    const m = process.memoryUsage();
    peak = Math.max(peak, mb(m.rss));
    gc?.();
    const live = gc ? process.memoryUsage() : null;
    const s = windows.stats;
    const x: Sample = {
      eventS: (eventMs - START_MS) / 1000,
      wallS: wall() / 1000,
      records,
      rssMb: mb(m.rss),
      heapMb: mb(m.heapUsed),
      externalMb: mb(m.external),
      liveHeapMb: live ? mb(live.heapUsed) : Number.NaN,
      liveExternalMb: live ? mb(live.external) : Number.NaN,
      trackedEntities: windows.trackedEntities,
      openPanes: windows.openPanes,
      scorer: scorer.size,
      evictedEntities: s.evicted.entities,
      evictedRequests: s.evicted.requests,
      scorerEvictions: scorer.evictions,
      windowsClosed: s.windowsClosed,
    };
    samples.push(x);
    process.stderr.write(
      `cardinality[${name}]: t=${x.eventS}s wall ${x.wallS.toFixed(1)}s rss ${x.rssMb.toFixed(0)} MB heap ${x.heapMb.toFixed(0)} MB external ${x.externalMb.toFixed(0)} MB ` +
        `live ${x.liveHeapMb.toFixed(0)}+${x.liveExternalMb.toFixed(0)} MB ` +
        `tracked ${x.trackedEntities} scorer ${ENTITY_TYPES.map((t) => x.scorer[t]).join('/')} evicted ${x.evictedEntities}\n`,
    );
  };
  let nextSample = START_MS + SAMPLE_MS;
  let maxT = START_MS;
  let cut = false;
  for (const r of stream) {
    records++;
    windows.add(r);
    if (windows.hasReady()) score(windows.drain());
    if (r.timestamp > maxT) {
      maxT = r.timestamp;
      while (maxT >= nextSample) {
        sample(nextSample);
        nextSample += SAMPLE_MS;
      }
    }
    if (budgetMs > 0 && (records & 4095) === 0 && wall() > budgetMs) {
      cut = true;
      break;
    }
  }
  if (!cut) score(windows.closeAll());
  const wallMs = wall();
  return {
    name,
    records,
    wallMs,
    eventS: (maxT - START_MS) / 1000,
    cut,
    maxRssMb: process.resourceUsage().maxRSS / 1024,
    peakSampledRssMb: peak,
    samples,
    windowStarts,
    verdicts,
    anomalous,
    late: windows.stats.late,
    counts,
  };
}

function gcFunction(): (() => void) | null {
  return (globalThis as { gc?: () => void }).gc ?? null;
}

/** The entity with the most requests summed over the given windows. */
function busiest(counts: Map<string, number>, windows: Set<number>): string | null {
  const total = new Map<string, number>();
  for (const [k, n] of counts) {
    const sp = k.indexOf(' ');
    if (!windows.has(Number(k.slice(0, sp)))) continue;
    const e = k.slice(sp + 1);
    total.set(e, (total.get(e) ?? 0) + n);
  }
  let best: string | null = null;
  let max = -1;
  for (const [e, n] of total) if (n > max) [best, max] = [e, n];
  return best;
}

const int = (x: number): string => Math.round(x).toLocaleString('en-US');
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const clock = (s: number): string => {
  const t = Math.round(s);
  return `${Math.floor(t / 60)}:${String(t % 60).padStart(2, '0')}`;
};
const utc = (ms: number): string => new Date(ms).toISOString().slice(11, 19);

function table(p: PassResult): string[] {
  const lines = [
    '| event time | wall s | records | RSS MB | heap MB | external MB | live heap + external MB | tracked entities | open panes | scorer asn / ja4 / asn×ja4 | evicted from panes: entities (requests) | scorer evictions | windows closed |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const s of p.samples) {
    lines.push(
      `| ${clock(s.eventS)} | ${s.wallS.toFixed(1)} | ${int(s.records)} | ${s.rssMb.toFixed(0)} | ${s.heapMb.toFixed(0)} | ${s.externalMb.toFixed(0)} | ` +
        `${Number.isNaN(s.liveHeapMb) ? '–' : `${s.liveHeapMb.toFixed(0)} + ${s.liveExternalMb.toFixed(0)}`} | ${int(s.trackedEntities)} | ${s.openPanes} | ` +
        `${ENTITY_TYPES.map((t) => int(s.scorer[t])).join(' / ')} | ${int(s.evictedEntities)} (${int(s.evictedRequests)}) | ${int(s.scorerEvictions)} | ${s.windowsClosed} |`,
    );
  }
  return lines;
}

function main(): void {
  const gc = gcFunction();
  const durationMs = MINUTES * 60_000;
  const config = parseConfig(JSON.parse(CONFIG_JSON) as unknown);
  process.stderr.write(
    `cardinality: ${MINUTES} min of event time, ${BENIGN_RPS} benign req/s, ${int(NEW_PER_MINUTE)} new fingerprints/min, ` +
      `flood pass wall budget ${MAX_WALL_S > 0 ? `${MAX_WALL_S} s` : 'none'}, scorer ${WITH_SCORER ? 'on' : 'off'}; gc ${(globalThis as { gc?: unknown }).gc ? 'exposed' : 'not exposed'}\n`,
  );

  const benign = runPass('benign', benignStream(durationMs), null, 0, gc);
  const watch: Record<EntityType, Set<string>> = { asn: new Set(), ja4: new Set(), asn_ja4: new Set() };
  for (const t of ENTITY_TYPES) for (const k of benign.counts[t].keys()) watch[t].add(k.slice(k.indexOf(' ') + 1));
  const flood = runPass('flood', merge(benignStream(durationMs), attackStream(durationMs, NEW_PER_MINUTE)), watch, MAX_WALL_S * 1000, gc);

  // Compare the windows both passes closed (all of them, unless the flood pass was cut short).
  const floodWindows = new Set(flood.windowStarts);
  const compared = new Set(benign.windowStarts.filter((w) => floodWindows.has(w)));
  const extra = flood.windowStarts.filter((w) => !benign.windowStarts.includes(w));

  // Heavy hitters: the busiest benign entity of each type, window by window, with and without the flood.
  const hh: { type: EntityType; entity: string; windows: number; equal: number; firstDiff: string }[] = [];
  for (const t of ENTITY_TYPES) {
    const e = busiest(benign.counts[t], compared);
    if (e === null) continue;
    let equal = 0;
    let firstDiff = '';
    for (const ws of [...compared].sort((a, b) => a - b)) {
      const n = benign.counts[t].get(`${ws} ${e}`) ?? 0;
      const m = flood.counts[t].get(`${ws} ${e}`) ?? 0;
      if (m === n) equal++;
      else if (!firstDiff) firstDiff = `window ${utc(ws)}: ${int(n)} alone, ${int(m)} under the flood`;
    }
    hh.push({ type: t, entity: e, windows: compared.size, equal, firstDiff });
  }
  // Every benign (entity, window) cell: how many lost requests to the caps under the flood.
  const cells = ENTITY_TYPES.map((t) => {
    let cellsN = 0;
    let same = 0;
    let changed = 0;
    let lost = 0;
    let total = 0;
    for (const [k, n] of benign.counts[t]) {
      if (!compared.has(Number(k.slice(0, k.indexOf(' '))))) continue;
      const m = flood.counts[t].get(k) ?? 0;
      cellsN++;
      total += n;
      if (m === n) same++;
      else {
        changed++;
        lost += n - m;
      }
    }
    return { type: t, cells: cellsN, same, changed, lost, total };
  });

  // Flatness under the flood: mean RSS of the middle and of the last third of the samples.
  const rss = flood.samples.map((s) => s.rssMb);
  const third = Math.floor(rss.length / 3);
  const middle = mean(rss.slice(third, 2 * third));
  const last = mean(rss.slice(rss.length - third));
  const drift = last / middle - 1;
  const enough = third >= 1;
  const flat = enough && Math.abs(drift) <= FLAT_TOLERANCE;
  const under = flood.maxRssMb < RSS_LIMIT_MB;
  const asnHh = hh.find((h) => h.type === 'asn');
  const hhOk = asnHh !== undefined && asnHh.windows > 0 && asnHh.equal === asnHh.windows && extra.length === 0;
  const verdict = (ok: boolean): string => (ok ? '**pass**' : '**FAIL**');
  const rate = (p: PassResult): number => p.records / (p.wallMs / 1000);
  const arriving = BENIGN_RPS + NEW_PER_MINUTE / 60;
  const partial = flood.cut ? ` (over the ${clock(flood.eventS)} of event time reached: the pass was cut short)` : '';

  const lines: string[] = [];
  lines.push('## Cardinality attack: memory and heavy hitters under a flood of new fingerprints', '');
  lines.push(
    `Run on ${new Date().toISOString().slice(0, 10)} in a child process (\`node ${process.execArgv.join(' ')} dist/bench/cardinality.js\`, Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}): ` +
      `${MINUTES} min of event time through \`SlidingWindows\`${WITH_SCORER ? ' and `EntityScorer`' : ' (scorer off)'} with the default configuration ` +
      `(windows ${config.windows.size_ms / 1000} s / ${config.windows.slide_ms / 1000} s, at most ${int(config.windows.max_entities_per_pane)} entities per type per pane, ` +
      `scorer at most ${int(config.scorer.max_entities_per_type)} entities per type), records generated on the fly and never stored. ` +
      `Pass **benign**: the simulator alone (seed ${SEED}, ${int(BENIGN_RPS)} req/s, no scenarios). Pass **flood**, in the same process after it: the same benign stream merged in event time with ` +
      `${int(NEW_PER_MINUTE)} attack requests per minute (${int(NEW_PER_MINUTE / 60)}/s), each with a never-seen JA4 and a fresh client IP, from ${ATTACK_ASNS.length} ASNs ` +
      `(${ATTACK_ASNS.join(', ')}: documentation ASNs, absent from the simulated world). Samples every ${SAMPLE_MS / 1000} s of event time: RSS, heap and external memory as the process has them, then a forced full GC and the live heap and external memory (the state itself, without the GC's slack). ` +
      `Wall budget of the flood pass: ${MAX_WALL_S > 0 ? `${MAX_WALL_S} s (\`BENCH_CARDINALITY_MAX_WALL_S\`)` : 'none'}.`,
    '',
  );
  if (flood.cut) {
    lines.push(
      `**The flood pass was cut short** by its wall budget after ${(flood.wallMs / 1000).toFixed(0)} s, at ${clock(flood.eventS)} of the ${MINUTES} min of event time: ` +
        `the engine handled ${int(rate(flood))} events/s, while this load arrives at ${int(arriving)} events/s of event time` +
        (rate(flood) < arriving ? ', so it cannot keep up in real time. ' : '. ') +
        'The bars below are read over the part that ran; `BENCH_CARDINALITY_MAX_WALL_S=0` runs it to the end.',
      '',
    );
  }
  lines.push('| bar | measured | result |', '|---|---|---|');
  lines.push(
    `| RSS flat under the flood: mean of the last third of the samples within ${FLAT_TOLERANCE * 100}% of the middle third's${partial} | ` +
      (enough ? `middle ${middle.toFixed(0)} MB, last ${last.toFixed(0)} MB (${drift >= 0 ? '+' : ''}${(drift * 100).toFixed(1)}%)` : `only ${rss.length} sample(s): too few to judge`) +
      ` | ${verdict(flat)} |`,
  );
  lines.push(`| peak RSS under the flood below ${RSS_LIMIT_MB} MB | ${flood.maxRssMb.toFixed(0)} MB (getrusage); largest sample ${flood.peakSampledRssMb.toFixed(0)} MB | ${verdict(under)} |`);
  lines.push(
    `| busiest benign ASN (${asnHh?.entity ?? '–'}): requests of every window equal with and without the flood | ` +
      `${asnHh ? `${asnHh.equal} of ${asnHh.windows} windows equal` : 'no ASN'}${asnHh?.firstDiff ? `; first difference: ${asnHh.firstDiff}` : ''}` +
      `${extra.length ? `; ${extra.length} windows closed only under the flood` : ''} | ${verdict(hhOk)} |`,
  );
  lines.push(`| the engine keeps up with the load in real time (not a bar of the brief; for scale) | ${int(rate(flood))} events/s handled, ${int(arriving)} arriving | ${rate(flood) >= arriving ? 'yes' : 'no'} |`);
  lines.push('');
  lines.push('| pass | records | event time | wall time | events/s | peak RSS (getrusage) | windows closed | verdicts (anomalous) | late |', '|---|---|---|---|---|---|---|---|---|');
  for (const p of [benign, flood]) {
    lines.push(
      `| ${p.name} | ${int(p.records)} | ${clock(p.eventS)}${p.cut ? ' (cut)' : ''} | ${(p.wallMs / 1000).toFixed(1)} s | ${int(rate(p))} | ${p.maxRssMb.toFixed(0)} MB | ${p.windowStarts.length} | ${int(p.verdicts)} (${int(p.anomalous)}) | ${p.late} |`,
    );
  }
  lines.push('');
  lines.push(
    `**flood / benign peak RSS: ${(flood.maxRssMb / benign.maxRssMb).toFixed(2)}**; flood / benign events/s: ${(rate(flood) / rate(benign)).toFixed(2)}. ` +
      'Both passes generate their records as they go (the flood pass about ten times as many per second of event time). ' +
      'The benign pass ran first, so its peak is its own.',
    '',
  );
  lines.push(`Heavy hitters, window by window over the ${compared.size} windows both passes closed (busiest benign entity of each type by requests):`, '');
  lines.push('| type | entity | windows equal with and without the flood | first difference |', '|---|---|---|---|');
  for (const h of hh) lines.push(`| ${h.type} | \`${h.entity.replaceAll('|', '\\|')}\` | ${h.equal} of ${h.windows} | ${h.firstDiff || '–'} |`);
  lines.push('');
  lines.push('Every benign entity in every one of those windows (light benign entities can lose requests to the per-pane caps, by design):', '');
  lines.push('| type | benign (entity, window) cells | unchanged | changed under the flood | benign requests lost |', '|---|---|---|---|---|');
  for (const c of cells) {
    lines.push(`| ${c.type} | ${int(c.cells)} | ${int(c.same)} | ${int(c.changed)} | ${int(c.lost)} of ${int(c.total)} (${((100 * c.lost) / Math.max(1, c.total)).toFixed(2)}%) |`);
  }
  lines.push('');
  lines.push('Samples of the flood pass ("external" is memory outside the V8 heap, mostly typed-array stores: sketches and detector rings; "live" is after a forced full GC):', '');
  lines.push(...table(flood));
  lines.push('');
  lines.push('Samples of the benign pass:', '');
  lines.push(...table(benign));
  lines.push('');
  process.stdout.write(lines.join('\n'));
}

main();
