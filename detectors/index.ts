import { RobustDeviation, type RobustDeviationOptions } from './robust-deviation.js';

/** A streaming detector of one series (CONTRACTS §6). */
export interface UnivariateDetector {
  /** Scores `value` against what came before, then learns it; returns a score in [0, 1]. */
  update(timestampMs: number, value: number): number;
  /** Scores without learning. */
  score(timestampMs: number, value: number): number;
  /** Learns without scoring. */
  learn(timestampMs: number, value: number): void;
  /** Serialisable state. */
  toJSON(): unknown;
}

const FACTORIES: Record<string, (options?: Record<string, unknown>) => UnivariateDetector> = {
  robust_deviation: (options) => new RobustDeviation(options as RobustDeviationOptions),
};

/** Names accepted by {@link createUnivariateDetector}. */
export function univariateDetectorNames(): string[] {
  return Object.keys(FACTORIES);
}

/** Creates a univariate detector by name with its hyperparameters. Throws on an unknown name. */
export function createUnivariateDetector(name: string, options?: Record<string, unknown>): UnivariateDetector {
  const factory = FACTORIES[name];
  if (!factory) throw new Error(`unknown detector '${name}'; known: ${univariateDetectorNames().join(', ')}`);
  return factory(options);
}

export { RobustDeviation };
