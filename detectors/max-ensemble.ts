import type { UnivariateDetector } from './index.js';

/** One member of a {@link MaxEnsemble}: the detector's registered name and the detector. */
export interface EnsembleMember {
  name: string;
  detector: UnivariateDetector;
}

/**
 * Several univariate detectors over one series, scored as the largest of their scores: each
 * member is calibrated to [0, 1] with 0.8 meaning "alert", so the maximum alerts when any member
 * would, and no more often (a noisy-OR would turn two half-confident members into an alert).
 * The members complement each other: a deviation test for spikes, CUSUM for sustained rises
 * (bench/RESULTS.md, temporal section). Every member sees and learns every value.
 */
export class MaxEnsemble implements UnivariateDetector {
  constructor(private readonly members: readonly EnsembleMember[]) {
    if (members.length === 0) throw new RangeError('MaxEnsemble: at least one member');
  }

  score(timestampMs: number, value: number): number {
    let best = 0;
    for (const m of this.members) best = Math.max(best, m.detector.score(timestampMs, value));
    return best;
  }

  learn(timestampMs: number, value: number): void {
    for (const m of this.members) m.detector.learn(timestampMs, value);
  }

  update(timestampMs: number, value: number): number {
    let best = 0;
    for (const m of this.members) best = Math.max(best, m.detector.update(timestampMs, value));
    return best;
  }

  /** The members' names and states, in order. */
  toJSON(): { members: { name: string; state: unknown }[] } {
    return { members: this.members.map((m) => ({ name: m.name, state: m.detector.toJSON() })) };
  }

  /** Restores {@link toJSON} output, each member through `restore` (by name); throws a TypeError naming what is wrong. */
  static fromJSON(state: unknown, restore: (name: string, state: unknown) => UnivariateDetector): MaxEnsemble {
    const W = 'MaxEnsemble.fromJSON';
    if (typeof state !== 'object' || state === null || !Array.isArray((state as { members?: unknown }).members)) throw new TypeError(`${W}: expected { members: [...] }`);
    const members = (state as { members: unknown[] }).members.map((m, i) => {
      if (typeof m !== 'object' || m === null || typeof (m as { name?: unknown }).name !== 'string') throw new TypeError(`${W}: members[${i}] must be { name, state }`);
      const { name, state: s } = m as { name: string; state: unknown };
      return { name, detector: restore(name, s) };
    });
    return new MaxEnsemble(members);
  }
}
