import { Cusum, type CusumOptions } from './cusum.js';
import { MaxEnsemble } from './max-ensemble.js';
import { RobustDeviation, type RobustDeviationOptions } from './robust-deviation.js';
import { RobustEwma, type RobustEwmaOptions } from './robust-ewma.js';

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

interface Factory {
  create(options?: Record<string, unknown>): UnivariateDetector;
  /** Rebuilds a detector from its toJSON() output; throws a TypeError naming what is wrong. */
  restore(state: unknown): UnivariateDetector;
}

const FACTORIES: Record<string, Factory> = {
  robust_deviation: {
    create: (options) => new RobustDeviation(options as RobustDeviationOptions),
    restore: (state) => RobustDeviation.fromJSON(state),
  },
  robust_ewma: {
    create: (options) => new RobustEwma(options as RobustEwmaOptions),
    restore: (state) => RobustEwma.fromJSON(state),
  },
  cusum: {
    create: (options) => new Cusum(options as CusumOptions),
    restore: (state) => Cusum.fromJSON(state),
  },
  /**
   * The largest score of its members. Options: `{ members: { <name>: <options>, … } }`, default
   * robust_deviation with a Poisson noise floor (spikes) and cusum (sustained rises).
   */
  max_ensemble: {
    create: (options) => {
      const members = (options?.members ?? { robust_deviation: { noise_floor: 'poisson' }, cusum: {} }) as Record<string, Record<string, unknown>>;
      if (typeof members !== 'object' || members === null) throw new TypeError("max_ensemble: 'members' must be an object of detector name → options");
      return new MaxEnsemble(Object.entries(members).map(([name, o]) => ({ name, detector: createUnivariateDetector(name, o) })));
    },
    restore: (state) => MaxEnsemble.fromJSON(state, restoreUnivariateDetector),
  },
};

/** Names accepted by {@link createUnivariateDetector}. */
export function univariateDetectorNames(): string[] {
  return Object.keys(FACTORIES);
}

/** Creates a univariate detector by name with its hyperparameters. Throws on an unknown name. */
export function createUnivariateDetector(name: string, options?: Record<string, unknown>): UnivariateDetector {
  return factoryOf(name).create(options);
}

/** Rebuilds a detector of `name` from its `toJSON()` output, which then scores exactly as the saved one would have. */
export function restoreUnivariateDetector(name: string, state: unknown): UnivariateDetector {
  return factoryOf(name).restore(state);
}

function factoryOf(name: string): Factory {
  const factory = FACTORIES[name];
  if (!factory) throw new Error(`unknown detector '${name}'; known: ${univariateDetectorNames().join(', ')}`);
  return factory;
}

export { Cusum, MaxEnsemble, RobustDeviation, RobustEwma };
