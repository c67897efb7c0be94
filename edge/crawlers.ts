import { BlockList, isIP } from 'node:net';
import { z } from 'zod';

/**
 * A crawler an edge node verifies per request: its user agent claims to be it AND its address
 * is in the ranges it publishes (e.g. Google's googlebot.json, Bing's bingbot.json). The claim
 * alone proves nothing (any bot can say Googlebot); the ranges alone would exempt everything
 * else the operator runs from them (a cloud).
 */
export const verifiedCrawlerSchema = z
  .object({
    /** Name in decisions and counters, e.g. `googlebot`. */
    name: z.string().min(1),
    /** Regular expression (source) the user agent must match, e.g. `Googlebot`. Case-insensitive. */
    user_agent: z.string().min(1).refine(
      (s) => {
        try {
          new RegExp(s, 'i');
          return true;
        } catch {
          return false;
        }
      },
      { message: 'must be a valid regular expression' },
    ),
    /** The crawler's published address ranges, CIDR (`66.249.64.0/19`, `2001:4860:4801:10::/64`). */
    cidrs: z
      .array(
        z.string().refine((c) => parseCidr(c) !== null, { message: "CIDRs look like '66.249.64.0/19' or '2001:4860:4801:10::/64'" }),
      )
      .min(1),
  })
  .strict();

/** One verified crawler, as configured. */
export type VerifiedCrawler = z.input<typeof verifiedCrawlerSchema>;

function parseCidr(cidr: string): { address: string; prefix: number; type: 'ipv4' | 'ipv6' } | null {
  const slash = cidr.indexOf('/');
  if (slash < 0) return null;
  const address = cidr.slice(0, slash);
  const prefix = Number(cidr.slice(slash + 1));
  const family = isIP(address);
  if (family === 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128)) return null;
  return { address, prefix, type: family === 4 ? 'ipv4' : 'ipv6' };
}

/**
 * The verified crawlers of an edge node: {@link verify} names the crawler a request is, or null.
 * Address checks use node's BlockList (prefix match, IPv4 and IPv6), one per crawler.
 */
export class VerifiedCrawlers {
  private readonly crawlers: { name: string; userAgent: RegExp; ranges: BlockList }[];

  /** `crawlers` must have been validated with {@link verifiedCrawlerSchema}. */
  constructor(crawlers: readonly z.output<typeof verifiedCrawlerSchema>[]) {
    this.crawlers = crawlers.map((c) => {
      const ranges = new BlockList();
      for (const cidr of c.cidrs) {
        const p = parseCidr(cidr) as NonNullable<ReturnType<typeof parseCidr>>;
        ranges.addSubnet(p.address, p.prefix, p.type);
      }
      return { name: c.name, userAgent: new RegExp(c.user_agent, 'i'), ranges };
    });
  }

  get size(): number {
    return this.crawlers.length;
  }

  /** The crawler whose user agent the request claims and whose ranges hold its address, or null. */
  verify(request: { client_ip?: string | null; user_agent?: string | null }): string | null {
    const ua = request.user_agent;
    const ip = request.client_ip;
    if (!ua || !ip) return null;
    const family = isIP(ip);
    if (family === 0) return null;
    for (const c of this.crawlers) {
      if (c.userAgent.test(ua) && c.ranges.check(ip, family === 4 ? 'ipv4' : 'ipv6')) return c.name;
    }
    return null;
  }
}
