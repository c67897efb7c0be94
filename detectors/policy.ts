import { z } from 'zod';

/**
 * Decision policy: how the detectors' scores combine into a verdict score, and when that is a
 * decision. Kept apart from scoring (STYLE §3): the detectors say how unusual each view of an
 * entity's window is; this says what counts as an attack.
 */
export const decisionPolicySchema = z
  .object({
    /** Verdict score at or above which a window is anomalous, in [0, 1]. Default 0.8. */
    threshold: z.number().min(0).max(1).default(0.8),
    /** Fewest requests in a window for it to be anomalous at all. Default 30. */
    min_requests: z.number().int().nonnegative().default(30),
    /**
     * Largest verdict score a rise in volume earns on its own, when what the entity sends looks
     * ordinary (to the population and to its own history). Below the threshold by default, so a
     * push notification or a marketing mail (more of the same people) is not an attack; 1 flags
     * on volume alone. Default 0.6.
     */
    volume_weight: z.number().min(0).max(1).default(0.6),
    /**
     * Population score that counts as no evidence: ordinary entities score about 0.1–0.25 (the
     * top 16% of a population reaches 0.2), so only the excess over this, rescaled to [0, 1],
     * counts towards the profile. Default 0.2.
     */
    population_floor: z.number().min(0).max(0.99).default(0.2),
    /**
     * Consecutive anomalous windows after which an entity's new level is accepted as its normal
     * (drift adaptation): its request baseline restarts at the current level. 0 never adapts.
     * Default 30 (5 minutes at a 10 s slide). Rules already made expire as usual.
     */
    adapt_after_windows: z.number().int().nonnegative().default(30),
    /**
     * Surge normalisation: when the traffic around an entity rises with it (a flash crowd), it is
     * judged against that rise ({@link expectedRises}).
     */
    surge: z
      .object({
        /** Default true. */
        enabled: z.boolean().default(true),
        /** Typical requests per window the surrounding traffic needs before its rise counts. Default 20. */
        min_typical: z.number().nonnegative().default(20),
      })
      .strict()
      .prefault({}),
  })
  .strict();

/** Validated decision policy. */
export type DecisionPolicy = z.infer<typeof decisionPolicySchema>;

/** What the detectors said of one entity's window. */
export interface Evidence {
  /** Rise of the request count against the entity's own history, after surge normalisation, in [0, 1]. */
  volume: number;
  /** Outlierness among the active entities of its type in this window (null: no population model yet). */
  population: number | null;
  /** Largest departure of a bot-indicative feature (auth failures, POSTs, requests per IP) from the entity's own history, in [0, 1]. */
  shift: number;
  /** Requests in the window. */
  requests: number;
}

/** A decision and the score it rests on. */
export interface Decision {
  /** Verdict score in [0, 1]. */
  score: number;
  /** How unusual what the entity sends is: 1 − (1 − population′)(1 − shift), population′ the excess over population_floor, in [0, 1]. */
  profile: number;
  anomalous: boolean;
}

/**
 * The ensemble: score = volume × (w + (1 − w) × profile), with w = volume_weight and profile the
 * noisy-or of population outlierness (its excess over population_floor) and feature shift. A window is anomalous when its traffic
 * rose (volume) AND what it sends is unusual (profile), or when it rose so much, with w near 1,
 * that volume alone suffices. Monotone in every input; 0 when volume is 0.
 */
export function decide(policy: DecisionPolicy, e: Evidence): Decision {
  const f = policy.population_floor;
  const population = clamp01(((e.population ?? 0) - f) / (1 - f));
  // Noisy-or: two weak, independent signs (odd among its peers, odd for itself) corroborate.
  const profile = 1 - (1 - population) * (1 - clamp01(e.shift));
  const w = policy.volume_weight;
  const score = clamp01(e.volume * (w + (1 - w) * profile));
  return { score, profile, anomalous: score >= policy.threshold && e.requests >= policy.min_requests };
}

/** Typical requests per window a pair needs to be part of the surroundings of others ({@link expectedRises}). */
const MIN_PAIR_TYPICAL = 5;

/** One asn×ja4 pair's window, for {@link expectedRises}. */
export interface PairTraffic {
  asn: string;
  ja4: string;
  requests: number;
  /** Typical requests per window (median of its own history). */
  typical: number;
}

/** How much of each entity's rise the traffic around it explains (1: none), by entity key. */
export interface ExpectedRises {
  asn: Map<string, number>;
  ja4: Map<string, number>;
  /** Keyed `<asn>|<ja4>`. */
  asn_ja4: Map<string, number>;
}

/**
 * Surge normalisation by cohort. A flash crowd is more of the same people: it lifts the traffic
 * of people's networks (ASNs) over people's browsers (JA4s) together. So each entity is judged
 * against the rise of the traffic around it, leaving its own traffic out (so that an attack
 * cannot explain itself):
 * - a pair (A, J): the smaller of the rise of A's other traffic (A without J) and of J's other
 *   traffic (J without A). Both sides must have risen: a bot fingerprint in a network that
 *   surges, or a surging browser in a quiet network, explains nothing;
 * - an ASN A: the typical-weighted median, over its pairs, of the rise of each J without A;
 * - a JA4 J: the typical-weighted median, over its pairs, of the rise of each A without J.
 * A rise is (requests + 1) / (typical + 1) of the rest, summed over its pairs with a typical of
 * at least 5; a rest with typical below `min_typical` explains nothing. Rises below 1 count as 1 (only rises are normalised). Medians, so that one
 * surging neighbour (an attack elsewhere) does not excuse an entity.
 */
export function expectedRises(policy: DecisionPolicy, pairs: readonly PairTraffic[]): ExpectedRises {
  const out: ExpectedRises = { asn: new Map(), ja4: new Map(), asn_ja4: new Map() };
  if (!policy.surge.enabled) return out;
  const minT = policy.surge.min_typical;
  const byAsn = new Map<string, { r: number; t: number }>();
  const byJa4 = new Map<string, { r: number; t: number }>();
  const add = (m: Map<string, { r: number; t: number }>, k: string, p: PairTraffic): void => {
    const x = m.get(k);
    if (x) {
      x.r += p.requests;
      x.t += p.typical;
    } else m.set(k, { r: p.requests, t: p.typical });
  };
  // Only pairs with a typical of at least MIN_PAIR_TYPICAL make up the surroundings. A sparse
  // pair's median is 0 or 1 while it shows up in a window with a few requests, and a pair absent
  // from the window is not in it at all: summed over many sparse pairs, that biases the rise up
  // (a quiet fingerprint's rest "rose" 1.4x with nothing going on).
  const counted = (p: PairTraffic): boolean => p.typical >= MIN_PAIR_TYPICAL;
  for (const p of pairs) {
    if (!counted(p)) continue;
    add(byAsn, p.asn, p);
    add(byJa4, p.ja4, p);
  }
  const none = { r: 0, t: 0 };
  const rest = (tot: { r: number; t: number } | undefined, p: PairTraffic): number => {
    const own = counted(p) ? p : { requests: 0, typical: 0 };
    const t = (tot ?? none).t - own.typical;
    return t >= minT ? Math.max(1, ((tot ?? none).r - own.requests + 1) / (t + 1)) : 1;
  };
  const asnVotes = new Map<string, { v: number; w: number }[]>();
  const ja4Votes = new Map<string, { v: number; w: number }[]>();
  const vote = (m: Map<string, { v: number; w: number }[]>, k: string, v: number, w: number): void => {
    if (!(w > 0)) return;
    const list = m.get(k);
    if (list) list.push({ v, w });
    else m.set(k, [{ v, w }]);
  };
  for (const p of pairs) {
    const asnRest = rest(byAsn.get(p.asn), p);
    const ja4Rest = rest(byJa4.get(p.ja4), p);
    const e = Math.min(asnRest, ja4Rest);
    if (e > 1) out.asn_ja4.set(`${p.asn}|${p.ja4}`, e);
    vote(asnVotes, p.asn, ja4Rest, p.typical);
    vote(ja4Votes, p.ja4, asnRest, p.typical);
  }
  for (const [k, votes] of asnVotes) {
    const e = weightedMedian(votes);
    if (e > 1) out.asn.set(k, e);
  }
  for (const [k, votes] of ja4Votes) {
    const e = weightedMedian(votes);
    if (e > 1) out.ja4.set(k, e);
  }
  return out;
}

/** Weighted median of `v` (1 without weight). */
function weightedMedian(points: { v: number; w: number }[]): number {
  let total = 0;
  for (const p of points) total += p.w;
  if (total <= 0) return 1;
  points.sort((a, b) => a.v - b.v);
  let acc = 0;
  for (const p of points) {
    acc += p.w;
    if (acc >= total / 2) return p.v;
  }
  return 1;
}

function clamp01(x: number): number {
  return x < 0 ? 0 : x > 1 ? 1 : x;
}
