/**
 * Temporal section of `npm run bench`: every univariate detector (univariateDetectorNames())
 * over a labelled evaluation of our own: request-count series of 10 s windows with a daily-like
 * season, Poisson noise at low and high volume, and planted spikes, bursts, level steps and
 * slow ramps, plus clean series for the false-alarm rate. Seeded, so every run scores the same
 * series.
 *
 * Scores: window-level ROC AUC, and a NAB-style score (Lavin & Ahmad, "Evaluating real-time
 * anomaly detection algorithms – the Numenta Anomaly Benchmark", 2015) with its standard
 * profile: each labelled anomaly window earns the scaled sigmoid of how early its first alert
 * (score ≥ threshold) came, 1 at its start, about 0 at its end, −1 if missed (A_FN = −1); each
 * alerting window outside the labelled windows costs 0.11 (A_FP). Normalised to 100 for a perfect
 * detector and 0 for one that never alerts. Here every alerting window outside a label counts,
 * where NAB weighs FPs by their distance after a window; that makes this score stricter.
 */
import { createUnivariateDetector, univariateDetectorNames } from '../detectors/index.js';
import { rocAuc } from '../detectors/roc-auc.js';
import { Random } from '../random.js';

/** The decision threshold the pipeline's policy uses. */
const THRESHOLD = 0.8;
/** Windows per simulated "day" (a 2 h season at 10 s windows, so a series holds several). */
const DAY = 720;
const LENGTH = 4 * DAY;

interface Series {
  kind: string;
  values: number[];
  /** Labelled anomaly windows [start, end), in window indices. */
  spans: [number, number][];
}

function poisson(r: Random, mean: number): number {
  if (mean < 30) {
    // Knuth's product method, exact for small means.
    const l = Math.exp(-mean);
    let k = 0;
    let p = r.next();
    while (p > l) {
      k++;
      p *= r.next();
    }
    return k;
  }
  return Math.max(0, Math.round(mean + Math.sqrt(mean) * r.normal()));
}

/** The labelled series: for each of two volumes and three seeds, one series per kind. */
function makeSeries(): Series[] {
  const out: Series[] = [];
  for (const base of [20, 800]) {
    for (let seed = 0; seed < 3; seed++) {
      const r = new Random(1_000 + seed, base);
      const season = (i: number): number => base * (1 + 0.5 * Math.sin((2 * Math.PI * i) / DAY) + 0.1 * Math.sin((2 * Math.PI * i) / (DAY / 8)));
      const make = (kind: string, extra: (i: number, level: number) => number, spans: [number, number][]): void => {
        const values = Array.from({ length: LENGTH }, (_, i) => poisson(r, Math.max(0.1, season(i) + extra(i, season(i)))));
        out.push({ kind: `${kind} (base ${base})`, values, spans });
      };
      const starts = [1.2, 1.9, 2.6, 3.3].map((d) => Math.floor(d * DAY + seed * 37));
      make('spikes', (i, l) => (starts.includes(i) ? 8 * l + 10 : 0), starts.map((s) => [s, s + 1]));
      const bursts: [number, number][] = starts.map((s, j) => [s, s + 6 + j * 8]);
      make('bursts', (i, l) => (bursts.some(([a, b]) => i >= a && i < b) ? (1 + (seed % 2)) * l + 10 : 0), bursts);
      const step = starts[1] as number;
      make('level step', (i, l) => (i >= step ? 0.8 * l : 0), [[step, step + 30]]);
      const ramp = starts[0] as number;
      make('slow ramp', (i, l) => (i >= ramp ? Math.min(1, (i - ramp) / 300) * 2 * l : 0), [[ramp, ramp + 300]]);
      make('clean', () => 0, []);
    }
  }
  return out;
}


interface Tally {
  raw: number;
  windows: number;
  detected: number;
  latency: number[];
  falseAlarms: number;
  cleanWindows: number;
  cleanAlarms: number;
  aucs: number[];
}

/** Scaled sigmoid of NAB: y from −1 (window start) to 0 (window end) gives about 1 to 0. */
const scaledSigmoid = (y: number): number => 2 / (1 + Math.exp(5 * y)) - 1;

function evaluate(name: string, s: Series, t: Tally): void {
  const d = createUnivariateDetector(name);
  const scores = s.values.map((v, i) => d.update(1_700_000_000_000 + i * 10_000, v));
  const labels = s.values.map((_, i) => (s.spans.some(([a, b]) => i >= a && i < b) ? 1 : 0));
  if (s.spans.length > 0) {
    const auc = rocAuc(scores, labels);
    if (Number.isFinite(auc)) t.aucs.push(auc);
  }
  for (const [a, b] of s.spans) {
    t.windows++;
    let first = -1;
    for (let i = a; i < b; i++) {
      if ((scores[i] as number) >= THRESHOLD) {
        first = i;
        break;
      }
    }
    if (first < 0) t.raw -= 1;
    else {
      t.detected++;
      t.latency.push(first - a);
      const y = b - a > 1 ? -1 + (first - a) / (b - a) : -1;
      t.raw += scaledSigmoid(y);
    }
  }
  let alarms = 0;
  for (let i = 0; i < scores.length; i++) if ((scores[i] as number) >= THRESHOLD && !labels[i]) alarms++;
  t.raw -= 0.11 * alarms;
  t.falseAlarms += alarms;
  if (s.spans.length === 0) {
    t.cleanWindows += s.values.length;
    t.cleanAlarms += alarms;
  }
}

const fmt = (x: number, d = 1): string => (Number.isFinite(x) ? x.toFixed(d) : '–');
const median = (xs: number[]): number => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};

/** Runs the temporal section and returns its markdown (without the title). */
export function runTemporalBench(): string {
  const series = makeSeries();
  const kinds = [...new Set(series.map((s) => s.kind.replace(/ \(base \d+\)$/, '')))];
  const names = univariateDetectorNames();
  const lines: string[] = [];
  lines.push(
    `${series.length} seeded series of ${LENGTH.toLocaleString('en-US')} windows (10 s each; a season of ${DAY} windows with a second harmonic), Poisson counts around a base of 20 and of 800 requests per window, three seeds each. ` +
      'Kinds: one-window spikes (9× the level), bursts of 6–30 windows (+100% or +200%), a level step (+80%, labelled for its first 30 windows), a slow ramp to 3× over 300 windows (labelled throughout), and clean series. ' +
      `Every detector runs with its defaults; an alert is a score ≥ ${THRESHOLD} (the pipeline's policy threshold).`,
    '',
    '| detector | NAB-style score (0 never alerts, 100 perfect) | anomaly windows caught | median latency (windows) | false alerts per 1,000 clean windows | mean AUC |',
    '|---|---|---|---|---|---|',
  );
  const perKind: Record<string, Record<string, Tally>> = {};
  for (const name of names) {
    const all: Tally = { raw: 0, windows: 0, detected: 0, latency: [], falseAlarms: 0, cleanWindows: 0, cleanAlarms: 0, aucs: [] };
    for (const s of series) {
      const kind = s.kind.replace(/ \(base \d+\)$/, '');
      const k = ((perKind[kind] ??= {})[name] ??= { raw: 0, windows: 0, detected: 0, latency: [], falseAlarms: 0, cleanWindows: 0, cleanAlarms: 0, aucs: [] });
      const before = { ...all, latency: [...all.latency], aucs: [...all.aucs] };
      evaluate(name, s, all);
      k.raw += all.raw - before.raw;
      k.windows += all.windows - before.windows;
      k.detected += all.detected - before.detected;
      k.latency.push(...all.latency.slice(before.latency.length));
      k.aucs.push(...all.aucs.slice(before.aucs.length));
      k.falseAlarms += all.falseAlarms - before.falseAlarms;
      k.cleanWindows += all.cleanWindows - before.cleanWindows;
      k.cleanAlarms += all.cleanAlarms - before.cleanAlarms;
    }
    const nab = (100 * (all.raw + all.windows)) / (2 * all.windows);
    lines.push(
      `| ${name} | **${fmt(nab)}** | ${all.detected} of ${all.windows} | ${fmt(median(all.latency), 0)} | ${fmt((1000 * all.cleanAlarms) / all.cleanWindows, 2)} | ${fmt(all.aucs.reduce((a, b) => a + b, 0) / all.aucs.length, 3)} |`,
    );
  }
  lines.push('', 'By kind (NAB-style score; caught; median latency):', '');
  lines.push(`| kind | ${names.join(' | ')} |`, `|---|${names.map(() => '---').join('|')}|`);
  for (const kind of kinds) {
    const cells = names.map((n) => {
      const t = perKind[kind]?.[n] as Tally;
      if (t.windows === 0) return `${t.falseAlarms} false alerts`;
      return `${fmt((100 * (t.raw + t.windows)) / (2 * t.windows))}; ${t.detected}/${t.windows}; ${fmt(median(t.latency), 0)}`;
    });
    lines.push(`| ${kind} | ${cells.join(' | ')} |`);
  }
  lines.push('');
  return lines.join('\n');
}
