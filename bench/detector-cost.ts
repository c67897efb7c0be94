/**
 * Detector cost per scored window (issue 4 bench). Simulated traffic (the three attacks plus a
 * flash crowd) goes through the pipeline's loop without sinks: the window engine, and each
 * closed window scored at once. The peer is the same loop with no scorer. Set-ups, in
 * alternating rounds, best of each kept:
 * - volume + shift only (population off);
 * - the full ensemble, population fits in this thread (what a fit costs when nothing hides it);
 * - the full ensemble, population fits in a worker thread (as the pipeline runs it), where a
 *   fit overlaps the windowing of the next slide.
 * Figures are the time added per closed window and per verdict, and run ÷ peer.
 */
import { performance } from 'node:perf_hooks';
import { generateTraffic } from '../cli/traffic.js';
import { parseConfig } from '../config.js';
import type { Config } from '../config.js';
import { SlidingWindows, type ClosedWindow } from '../consumers/windows.js';
import { EntityScorer, entityScorerSchema } from '../detectors/entity-scorer.js';
import { WorkerTrainer } from '../detectors/population-trainer.js';
import type { PopulationTrainer, TrainJob, TrainResult } from '../detectors/population.js';
import { trainPopulationModel } from '../detectors/population.js';
import type { RequestLog } from '../schemas/index.js';
import { quantile } from 'simple-statistics';

interface Timing {
  /** Wall time of the whole run: windowing and scoring, interleaved as in the pipeline. */
  totalMs: number;
  /** Time in scoreWindow per closed window (excluding waits for fits). */
  perWindow: number[];
  /** Time waiting in settle() for a fit the next window needs. */
  waitMs: number;
  verdicts: number;
  windows: number;
}

/** The pipeline's loop without sinks: events into the window engine, each closed window scored at once. */
async function run(events: readonly RequestLog[], config: Config, scorer: EntityScorer | null): Promise<Timing> {
  const engine = new SlidingWindows(config.windows);
  const perWindow: number[] = [];
  let waitMs = 0;
  let verdicts = 0;
  let windows = 0;
  const handle = async (closed: ClosedWindow[]): Promise<void> => {
    for (const w of closed) {
      windows++;
      if (!scorer) continue;
      const a = performance.now();
      await scorer.settle();
      const b = performance.now();
      verdicts += scorer.scoreWindow(w).length;
      perWindow.push(performance.now() - b);
      waitMs += b - a;
    }
  };
  const t0 = performance.now();
  for (const log of events) {
    engine.add(log, 0, -1);
    if (engine.hasReady()) await handle(engine.drain());
  }
  await handle(engine.closeAll());
  return { totalMs: performance.now() - t0, perWindow, waitMs, verdicts, windows };
}

/** Runs the section; returns its markdown (without the title). */
export async function runDetectorCostBench(workerScript: URL): Promise<string> {
  const rate = Number(process.env.BENCH_DETECTORS_RATE ?? 1_000);
  const minutes = Number(process.env.BENCH_DETECTORS_MINUTES ?? 12);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
  const config = parseConfig({});
  const opts = { seed: 7, startMs: Date.UTC(2026, 10, 1), durationMs: minutes * 60_000, baseRps: rate, scenarios: ['credential_stuffing', 'scraper', 'l7_flood', 'flash_crowd'] as const };
  const events = [...generateTraffic({ ...opts, scenarios: [...opts.scenarios] })].map((e) => e.log);

  const noPop = entityScorerSchema.parse({ population: { enabled: false } });
  const full = config.scorer;
  // Counts fits and their time when they run in this thread.
  let fitMs = 0;
  let fits = 0;
  const timedInline: PopulationTrainer = {
    train: (job: TrainJob): TrainResult => {
      const s = performance.now();
      const r = trainPopulationModel(job);
      fitMs += performance.now() - s;
      fits++;
      return r;
    },
  };
  const worker = new WorkerTrainer(workerScript);
  const best: Record<'engine' | 'volume' | 'inline' | 'worker', Timing | null> = { engine: null, volume: null, inline: null, worker: null };
  const keep = (k: keyof typeof best, t: Timing): void => {
    const b = best[k];
    if (!b || t.totalMs < b.totalMs) best[k] = t;
  };
  let fitMsBest = Number.POSITIVE_INFINITY;
  let fitsSeen = 0;
  try {
    for (let r = 0; r < rounds; r++) {
      keep('engine', await run(events, config, null));
      keep('volume', await run(events, config, new EntityScorer(noPop, 'bench', { trackChanges: false })));
      fitMs = 0;
      fits = 0;
      keep('inline', await run(events, config, new EntityScorer(full, 'bench', { trackChanges: false, trainer: timedInline })));
      if (fitMs < fitMsBest) fitMsBest = fitMs;
      fitsSeen = fits;
      keep('worker', await run(events, config, new EntityScorer(full, 'bench', { trackChanges: false, trainer: worker })));
    }
  } finally {
    await worker.close();
  }
  const e = best.engine as Timing;
  const v = best.volume as Timing;
  const i = best.inline as Timing;
  const w = best.worker as Timing;
  const n = e.windows;
  const extra = (t: Timing): number => (t.totalMs - e.totalMs) / n;
  const line = (name: string, t: Timing): string =>
    `| ${name} | ${extra(t).toFixed(1)} | ${quantile(t.perWindow, 0.5).toFixed(1)} | ${quantile(t.perWindow, 0.99).toFixed(1)} | ${(t.waitMs / n).toFixed(2)} | ${((extra(t) * n * 1000) / t.verdicts).toFixed(1)} | ${(t.totalMs / e.totalMs).toFixed(3)} |`;
  return [
    `${events.length.toLocaleString('en-US')} simulated requests (${minutes} min at ${rate} req/s; the three attacks and a flash crowd) close ${n} windows with about ` +
      `${Math.round(w.verdicts / n).toLocaleString('en-US')} scored entities each (asn, ja4, asn×ja4). Each run feeds them through the window engine and scores each closed window at once, as the pipeline does (no sinks). ` +
      `The peer is the same loop with no scorer: ${(e.totalMs / 1000).toFixed(1)} s. Best of ${rounds} alternating rounds:`,
    '',
    '| scorer | added ms per window (run − peer) | scoreWindow p50 ms | p99 ms | ms per window waiting for a fit | µs per verdict | run ÷ peer |',
    '|---|---|---|---|---|---|---|',
    line('volume + shift (population off)', v),
    line('full ensemble, fits in this thread', i),
    line('full ensemble, fits in a worker thread (as the pipeline runs)', w),
    '',
    `- ${fitsSeen} population fits per run, ${(fitMsBest / Math.max(1, fitsSeen)).toFixed(1)} ms each when run in this thread. In the worker they overlap the windowing of the next slide; ` +
      `what stays on the consuming thread is copying the training set out and decoding the model back.`,
    `- The population view adds ${(extra(w) - extra(v)).toFixed(1)} ms per window with fits in the worker, ${(extra(i) - extra(v)).toFixed(1)} ms with fits inline: scoring each active entity with the forest, sampling the reservoir, installing models.`,
    `- Verdicts per run: ${w.verdicts.toLocaleString('en-US')}. The worker and inline runs give identical verdicts (detectors/population-trainer.test.ts).`,
    '',
  ].join('\n');
}
