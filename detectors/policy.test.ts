import { describe, expect, it } from 'vitest';
import { decide, decisionPolicySchema, expectedRises, type PairTraffic } from './policy.js';

const policy = decisionPolicySchema.parse({});

describe('decide (the ensemble)', () => {
  it('does not flag a rise in volume alone, when what the entity sends looks ordinary', () => {
    // An ordinary population score (below population_floor, 0.2) is no evidence at all.
    expect(decide(policy, { volume: 1, population: 0.15, shift: 0, requests: 500 }).score).toBeCloseTo(0.6, 9);
    const d = decide(policy, { volume: 1, population: 0.6, shift: 0, requests: 500 });
    expect(d.score).toBeCloseTo(0.6 + 0.4 * 0.5, 9);
    expect(d.anomalous).toBe(true);
    expect(decide(policy, { volume: 1, population: 0.5, shift: 0, requests: 500 }).anomalous).toBe(false);
  });

  it('flags a rise with an unusual profile, and lets two weak signs corroborate (noisy-or)', () => {
    expect(decide(policy, { volume: 1, population: 0.9, shift: 0, requests: 500 }).anomalous).toBe(true);
    const weak = decide(policy, { volume: 0.95, population: 0.44, shift: 0.6, requests: 500 });
    expect(weak.profile).toBeCloseTo(1 - 0.7 * 0.4, 9);
    expect(weak.anomalous).toBe(true);
    expect(decide(policy, { volume: 0.95, population: 0.44, shift: 0, requests: 500 }).anomalous).toBe(false);
    expect(decide(policy, { volume: 0.95, population: 0, shift: 0.6, requests: 500 }).anomalous).toBe(false);
  });

  it('never flags without a rise in volume, nor below min_requests', () => {
    expect(decide(policy, { volume: 0, population: 1, shift: 1, requests: 500 })).toMatchObject({ score: 0, anomalous: false });
    expect(decide(policy, { volume: 1, population: 1, shift: 1, requests: 29 })).toMatchObject({ score: 1, anomalous: false });
  });

  it('flags on volume alone when volume_weight is 1, and works without a population model', () => {
    const loud = decisionPolicySchema.parse({ volume_weight: 1 });
    expect(decide(loud, { volume: 0.9, population: null, shift: 0, requests: 500 }).anomalous).toBe(true);
    expect(decide(policy, { volume: 0.9, population: null, shift: 0.9, requests: 500 }).anomalous).toBe(true);
  });

  it('is monotone in every input', () => {
    const grid = [0, 0.2, 0.5, 0.8, 1];
    for (const v of grid)
      for (const p of grid)
        for (const s of grid) {
          const base = decide(policy, { volume: v, population: p, shift: s, requests: 100 }).score;
          expect(base).toBeGreaterThanOrEqual(0);
          expect(base).toBeLessThanOrEqual(1);
          expect(decide(policy, { volume: Math.min(1, v + 0.1), population: p, shift: s, requests: 100 }).score).toBeGreaterThanOrEqual(base);
          expect(decide(policy, { volume: v, population: Math.min(1, p + 0.1), shift: s, requests: 100 }).score).toBeGreaterThanOrEqual(base);
          expect(decide(policy, { volume: v, population: p, shift: Math.min(1, s + 0.1), requests: 100 }).score).toBeGreaterThanOrEqual(base);
        }
  });
});

/** Ten eyeball networks × three browsers, all at `rise` times typical, plus a bot pair. */
function crowd(rise: number, bot: PairTraffic | null): PairTraffic[] {
  const out: PairTraffic[] = [];
  for (let a = 0; a < 10; a++) for (const j of ['chrome', 'safari', 'firefox']) out.push({ asn: `eye${a}`, ja4: j, requests: Math.round(50 * rise), typical: 50 });
  // A cloud network's API client that does not take part in the crowd.
  out.push({ asn: 'cloud', ja4: 'go', requests: 80, typical: 80 });
  out.push({ asn: 'cloud', ja4: 'chrome', requests: 20, typical: 20 });
  if (bot) out.push(bot);
  return out;
}

describe('expectedRises (surge normalisation by cohort)', () => {
  it('explains a flash crowd: each pair, network and browser rose with the traffic around it', () => {
    const r = expectedRises(policy, crowd(4, null));
    // The smaller side: chrome elsewhere, which includes the cloud network's chrome that did not rise.
    expect(r.asn_ja4.get('eye3|chrome')).toBeCloseTo((4 * 50 * 9 + 20 + 1) / (50 * 9 + 20 + 1), 6);
    expect(r.asn.get('eye3')).toBeGreaterThan(3.9);
    expect(r.ja4.get('safari')).toBeGreaterThan(3.9);
  });

  it('explains nothing for traffic whose surroundings did not rise', () => {
    const r = expectedRises(policy, crowd(4, null));
    // cloud|go: neither the cloud network's other traffic nor go elsewhere rose.
    expect(r.asn_ja4.get('cloud|go')).toBeUndefined();
    // cloud|chrome: chrome rose elsewhere, but the cloud network's other traffic did not: both sides must rise.
    expect(r.asn_ja4.get('cloud|chrome')).toBeUndefined();
    expect(r.ja4.get('go')).toBeUndefined();
  });

  it('does not let an attack explain itself, nor excuse a bot fingerprint inside a surging network', () => {
    // A bot fingerprint from an eyeball network during the crowd: the network rose, the fingerprint elsewhere did not.
    const r = expectedRises(policy, crowd(4, { asn: 'eye1', ja4: 'python', requests: 900, typical: 5 }));
    expect(r.asn_ja4.get('eye1|python')).toBeUndefined();
    // Without a crowd, the bot's own traffic lifts its network and fingerprint, but each is judged without it.
    const calm = expectedRises(policy, crowd(1, { asn: 'eye1', ja4: 'headless', requests: 5000, typical: 50 }));
    expect(calm.asn_ja4.get('eye1|headless')).toBeUndefined();
    expect(calm.asn.get('eye1')).toBeUndefined();
    expect(calm.ja4.get('headless')).toBeUndefined();
  });

  it('leaves sparse pairs out of the surroundings: showing up with a few requests against a median of 0 is not a rise', () => {
    const pairs: PairTraffic[] = [{ asn: 'cloud', ja4: 'headless', requests: 140, typical: 18 }];
    // Forty sparse pairs of the same fingerprint elsewhere, each present with 2 requests, median 0 or 1.
    for (let a = 0; a < 40; a++) pairs.push({ asn: `net${a}`, ja4: 'headless', requests: 2, typical: a % 2 });
    // And forty sparse fingerprints in the same network.
    for (let j = 0; j < 40; j++) pairs.push({ asn: 'cloud', ja4: `tool${j}`, requests: 2, typical: j % 2 });
    expect(expectedRises(policy, pairs).asn_ja4.get('cloud|headless')).toBeUndefined();
  });

  it('is off when disabled', () => {
    const r = expectedRises(decisionPolicySchema.parse({ surge: { enabled: false } }), crowd(4, null));
    expect(r.asn.size + r.ja4.size + r.asn_ja4.size).toBe(0);
  });
});
