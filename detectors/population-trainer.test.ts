import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { EntityAggregate, type WindowAggregateRow } from '../consumers/aggregates.js';
import { Random } from '../random.js';
import { EntityScorer, entityScorerSchema } from './entity-scorer.js';
import { trainPopulationModel } from './population.js';
import { WorkerTrainer } from './population-trainer.js';

// The worker runs compiled JavaScript: `npm test` builds dist/ first.
const script = new URL('../dist/detectors/population-worker.js', import.meta.url);
const trainer = new WorkerTrainer(script);
afterAll(() => trainer.close());

function rows(r: Random, start: number, n: number): WindowAggregateRow[] {
  return Array.from({ length: n }, (_, e) => {
    const requests = 20 + Math.round(60 * r.next());
    return {
      ...new EntityAggregate('asn').toRow(String(64_000 + e), start, start + 60_000, 0),
      requests,
      unique_ips: Math.max(1, Math.round(requests / (2 + 3 * r.next()))),
      requests_per_ip_max: 3 + Math.round(5 * r.next()),
      static_requests: Math.round(requests * (0.3 + 0.2 * r.next())),
      status_401: r.next() < 0.2 ? 1 : 0,
      top_path_requests: [Math.ceil(requests * 0.2 * r.next())],
    };
  });
}

describe('WorkerTrainer (population fits in a worker thread)', () => {
  it('is built (run npm run build)', () => {
    expect(existsSync(fileURLToPath(script))).toBe(true);
  });

  it('fits exactly what the consuming thread would', async () => {
    const r = new Random(5, 1);
    const vectors = new Float64Array(600 * 9).map(() => r.normal());
    const job = { vectors, features: 9, seed: 7 };
    const [a, b] = [await trainer.train(job), trainPopulationModel(job)];
    expect(a.medians).toEqual(b.medians);
    expect(a.scales).toEqual(b.scales);
    expect(a.forest).toEqual(b.forest);
    expect(Array.from(a.calibration)).toEqual(Array.from(b.calibration));
  });

  it('fails a job with a clear error instead of hanging', async () => {
    await expect(trainer.train({ vectors: new Float64Array(3), features: 3, seed: 0 })).rejects.toThrow(/population fit failed in the worker: .*at least 2 vectors/);
  });

  it('gives a scorer the same verdicts as fitting in this thread (replay is deterministic)', async () => {
    const config = entityScorerSchema.parse({ population: { min_training: 64, refit_every: 2 } });
    const inline = new EntityScorer(config, 't');
    const threaded = new EntityScorer(config, 't', { trainer });
    const r = new Random(9, 2);
    let withPopulation = 0;
    for (let i = 0; i < 30; i++) {
      const w = { windowStart: i * 10_000, windowEnd: i * 10_000 + 60_000, rows: rows(r, i * 10_000, 50) };
      await threaded.settle();
      const v = threaded.scoreWindow(w);
      expect(v).toEqual(inline.scoreWindow(w));
      withPopulation += v.filter((x) => x.detectors.population !== undefined).length;
    }
    expect(withPopulation).toBeGreaterThan(0);
  });

  it('makes a scorer that was not settled refuse to score rather than score with a stale model', async () => {
    const config = entityScorerSchema.parse({ population: { min_training: 16 } });
    const slow = { train: (job: Parameters<typeof trainPopulationModel>[0]) => new Promise<ReturnType<typeof trainPopulationModel>>((res) => setTimeout(() => res(trainPopulationModel(job)), 50)) };
    const s = new EntityScorer(config, 't', { trainer: slow });
    const r = new Random(1, 1);
    s.scoreWindow({ windowStart: 0, windowEnd: 60_000, rows: rows(r, 0, 20) });
    expect(() => s.scoreWindow({ windowStart: 10_000, windowEnd: 70_000, rows: rows(r, 10_000, 20) })).toThrow(/await settle\(\)/);
    await s.settle();
    expect(() => s.scoreWindow({ windowStart: 10_000, windowEnd: 70_000, rows: rows(r, 10_000, 20) })).not.toThrow();
  });
});
