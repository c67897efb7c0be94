import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RequestLog } from '../schemas/index.js';
import { EntityAggregate, digestRecord } from './aggregates.js';

function log(i: number, ip: string, path: string, status = 200): RequestLog {
  return {
    timestamp: 1_700_000_000_000 + i, request_id: String(i), client_ip: ip, asn: 64512, country: 'XX', ja4: `t13d${i % 3}`,
    user_agent: `ua-${i % 7}`, method: i % 4 === 0 ? 'POST' : 'GET', host: 'h', path, status, response_bytes: 100 + i,
    protocol: i % 2 ? 'HTTP/2' : 'HTTP/1.1', challenge: i % 5 === 0 ? 'ISSUED' : 'NONE',
  };
}

describe('EntityAggregate', () => {
  it('round-trips through JSON at every sketch level, and keeps counting identically', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 6_000 }), fc.constantFrom('asn' as const, 'ja4' as const, 'asn_ja4' as const), (n, type) => {
        const a = new EntityAggregate(type);
        for (let i = 0; i < n; i++) {
          const r = log(i, `10.${i % 250}.${(i >> 8) % 250}.1`, `/p/${i % 40}`, i % 9 === 0 ? 403 : 200);
          a.add(r, digestRecord(r));
        }
        const b = EntityAggregate.fromJSON(JSON.parse(JSON.stringify(a)));
        expect(b.toRow('e', 0, 60_000, 0)).toEqual(a.toRow('e', 0, 60_000, 0));
        const more = log(n + 1, '192.0.2.1', '/new');
        a.add(more, digestRecord(more));
        b.add(more, digestRecord(more));
        expect(b.toRow('e', 0, 60_000, 0)).toEqual(a.toRow('e', 0, 60_000, 0));
      }),
      { numRuns: 25 },
    );
  });

  it('rejects malformed input and names the part', () => {
    expect(() => EntityAggregate.fromJSON(null)).toThrow(/expected an object/);
    const ok = new EntityAggregate('asn').toJSON();
    expect(() => EntityAggregate.fromJSON({ ...ok, v: 2 })).toThrow(/version/);
    expect(() => EntityAggregate.fromJSON({ ...ok, counters: [1] })).toThrow(/counters/);
    expect(() => EntityAggregate.fromJSON({ ...ok, ips: { v: 1, level: 'nope' } })).toThrow();
  });

  it('estimates distinct IPs of a window merged from panes within 2%', () => {
    const panes = [0, 1, 2].map(() => new EntityAggregate('asn'));
    // 60,000 distinct IPs over three panes, with a third of them repeated across panes.
    for (let i = 0; i < 60_000; i++) {
      const r = log(i, `ip-${i}`, '/');
      const pane = panes[i % 3] as EntityAggregate;
      pane.add(r, digestRecord(r));
      if (i % 3 === 0) (panes[(i + 1) % 3] as EntityAggregate).add(r, digestRecord(r));
    }
    const w = (panes[0] as EntityAggregate).clone();
    w.merge(panes[1] as EntityAggregate);
    w.merge(panes[2] as EntityAggregate);
    const row = w.toRow('64512', 0, 60_000, 0);
    expect(row.requests).toBe(80_000);
    expect(Math.abs(row.unique_ips - 60_000) / 60_000).toBeLessThan(0.02);
    expect(row.requests_per_ip_max).toBeLessThanOrEqual(2);
  });

  it('reports the busiest paths and client IP exactly when they dominate', () => {
    const a = new EntityAggregate('asn_ja4');
    for (let i = 0; i < 5_000; i++) {
      const hot = i % 2 === 0;
      const r = log(i, hot ? '203.0.113.9' : `198.51.${i % 200}.${i % 97}`, hot ? '/login' : `/item/${i}`);
      a.add(r, digestRecord(r));
    }
    const row = a.toRow('64512|t13d', 0, 60_000, 0);
    expect(row.top_paths[0]).toBe('/login');
    expect(row.top_path_requests[0]).toBeGreaterThanOrEqual(2_500);
    expect(row.top_path_requests[0]).toBeLessThanOrEqual(2_500 + 5_000 / 16);
    expect(row.requests_per_ip_max).toBeGreaterThanOrEqual(2_500 - 5_000 / 16);
    expect(row.requests_per_ip_max).toBeLessThanOrEqual(2_500);
  });
});
