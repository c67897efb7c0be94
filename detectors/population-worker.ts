/**
 * Worker-thread entry of {@link WorkerTrainer}: fits population models off the consuming thread.
 * Each message is a {@link TrainJob} with an id; the answer carries the same id and either the
 * {@link TrainResult} or the error's message.
 */
import { parentPort } from 'node:worker_threads';
import { trainPopulationModel, type TrainJob } from './population.js';

parentPort?.on('message', (msg: { id: number; job: TrainJob }) => {
  try {
    const result = trainPopulationModel(msg.job);
    parentPort?.postMessage({ id: msg.id, result }, [result.calibration.buffer as ArrayBuffer]);
  } catch (e) {
    parentPort?.postMessage({ id: msg.id, error: e instanceof Error ? e.message : String(e) });
  }
});
