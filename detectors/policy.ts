import { z } from 'zod';

/** Decision policy: turns a score into a decision. Kept apart from scoring (STYLE §3). */
export const decisionPolicySchema = z
  .object({
    /** Score at or above which a window is anomalous, in [0, 1]. Default 0.8 (about 12 robust deviations). */
    threshold: z.number().min(0).max(1).default(0.8),
    /** Fewest requests in a window for it to be anomalous at all. Default 30. */
    min_requests: z.number().int().nonnegative().default(30),
  })
  .strict();

/** Validated decision policy. */
export type DecisionPolicy = z.infer<typeof decisionPolicySchema>;

/** The decision for one scored window. */
export function decide(policy: DecisionPolicy, score: number, requests: number): boolean {
  return score >= policy.threshold && requests >= policy.min_requests;
}
