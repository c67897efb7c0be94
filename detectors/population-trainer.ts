import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { logger } from '../logger.js';
import { inlineTrainer, type PopulationTrainer, type TrainJob, type TrainResult } from './population.js';

/**
 * The compiled worker script. From the TypeScript sources (vitest), the sibling is a .ts file
 * Node cannot load in a worker, so the build in dist/ is used (`npm test` builds it first).
 */
function workerScript(): URL | null {
  const sibling = new URL('./population-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(sibling))) return sibling;
  const built = new URL('../dist/detectors/population-worker.js', import.meta.url);
  return existsSync(fileURLToPath(built)) ? built : null;
}

/**
 * Fits population models in one worker thread, so a refit (tens of ms) never blocks
 * consumption. Jobs run one at a time in the order sent. The thread keeps the process alive only
 * while a job runs, and {@link close} ends it. A crashed worker fails its pending jobs (the
 * scorer surfaces the error at the next window) and is restarted for the next job.
 */
export class WorkerTrainer implements PopulationTrainer {
  private worker: Worker | null = null;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (r: TrainResult) => void; reject: (e: Error) => void }>();

  constructor(private readonly script: URL) {}

  private start(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(this.script);
    w.on('message', (msg: { id: number; result?: TrainResult; error?: string }) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (this.pending.size === 0) w.unref();
      if (msg.result) p.resolve(msg.result);
      else p.reject(new Error(`population fit failed in the worker: ${msg.error ?? 'unknown error'}`));
    });
    const fail = (e: Error): void => {
      this.worker = null;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    w.on('error', (e) => fail(e));
    w.on('exit', (code) => {
      if (this.pending.size > 0) fail(new Error(`population worker exited with code ${code}`));
      this.worker = null;
    });
    this.worker = w;
    return w;
  }

  train(job: TrainJob): Promise<TrainResult> {
    const id = this.nextId++;
    return new Promise<TrainResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const w = this.start();
      // Referenced while a job runs (an awaited fit keeps the process alive), not when idle.
      w.ref();
      // The vectors are copied, not transferred: the scorer keeps its samples.
      w.postMessage({ id, job });
    });
  }

  /** Ends the worker thread; jobs still running are failed. */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    if (w) await w.terminate();
  }
}

let shared: PopulationTrainer | null = null;

/**
 * The process's worker-thread trainer, shared by every scorer (fits are short and rare: one per
 * type every refit interval). Falls back to fitting in this thread, with a warning, when the
 * compiled worker script cannot be found (sources run without a build).
 */
export function sharedWorkerTrainer(): PopulationTrainer {
  if (shared) return shared;
  const script = workerScript();
  if (!script) {
    logger.warn('population worker script not built (run npm run build); fitting population models in the consuming thread');
    shared = inlineTrainer;
  } else shared = new WorkerTrainer(script);
  return shared;
}
