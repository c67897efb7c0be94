import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DistinctCounter, SpaceSaving, hashString } from './sketches.js';

/** fast-check runs are seeded so a failure replays the same way. */
const FC = { seed: 20240601, numRuns: 200 };

/** Textbook byte-wise MurmurHash3_x86_32 (SMHasher), as an independent reference. */
function murmur3Bytes(bytes: Uint8Array, seed: number): number {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  let h = seed >>> 0;
  const nblocks = bytes.length >> 2;
  for (let b = 0; b < nblocks; b++) {
    const o = b * 4;
    let k = bytes[o]! | (bytes[o + 1]! << 8) | (bytes[o + 2]! << 16) | (bytes[o + 3]! << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = nblocks * 4;
  const rest = bytes.length & 3;
  if (rest > 0) {
    let k = 0;
    for (let i = rest - 1; i >= 0; i--) k = (k << 8) | bytes[tail + i]!;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  h ^= bytes.length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The UTF-16LE bytes of s, code unit by code unit (lone surrogates included). */
function utf16le(s: string): Uint8Array {
  const out = new Uint8Array(s.length * 2);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    out[2 * i] = c & 0xff;
    out[2 * i + 1] = c >>> 8;
  }
  return out;
}

/** `n` distinct item hashes, `item-<start>` … under `seed`. */
function hashes(start: number, n: number, seed = 0): number[] {
  const out: number[] = [];
  for (let i = start; i < start + n; i++) out.push(hashString(`item-${i}`, seed));
  return out;
}

function counterOf(hs: Iterable<number>): DistinctCounter {
  const c = new DistinctCounter();
  for (const h of hs) c.add(h);
  return c;
}

function level(c: DistinctCounter): string {
  return (c.toJSON() as { level: string }).level;
}

function relErr(estimate: number, truth: number): number {
  return Math.abs(estimate - truth) / truth;
}

describe('hashString', () => {
  // Reference values: python3 mmh3 5.3.1, mmh3.hash(s.encode('utf-16-le'), seed, signed=False).
  it.each([
    ['', 0, 0],
    ['a', 0, 1867108634],
    ['ab', 0, 374890698],
    ['abc', 0, 1118836419],
    ['203.0.113.42', 0, 2889500241],
    ['hello world', 0, 1689409188],
    ['Mozilla/5.0', 0, 113274378],
    ['héllo ☃ 😀', 0, 4292642934],
    ['', 42, 142593372],
    ['a', 42, 2024861961],
    ['abc', 42, 758957582],
    ['203.0.113.42', 42, 3513414055],
    ['Mozilla/5.0', 42, 766726825],
  ])('hashString(%j, %i) = %i (mmh3 over UTF-16LE)', (s, seed, expected) => {
    expect(hashString(s, seed)).toBe(expected);
  });

  it('defaults the seed to 0', () => {
    expect(hashString('203.0.113.42')).toBe(hashString('203.0.113.42', 0));
  });

  it('equals byte-wise MurmurHash3_x86_32 of the UTF-16LE bytes for any code units and seed', () => {
    const codeUnits = fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 40 }).map((cs) => String.fromCharCode(...cs));
    fc.assert(
      fc.property(codeUnits, fc.integer({ min: 0, max: 0xffffffff }), (s, seed) => {
        const h = hashString(s, seed);
        expect(h).toBe(murmur3Bytes(utf16le(s), seed));
        expect(Number.isInteger(h) && h >= 0 && h <= 0xffffffff).toBe(true);
      }),
      FC,
    );
  });
});

describe('DistinctCounter', () => {
  it('has precision 14', () => {
    expect(DistinctCounter.PRECISION).toBe(14);
  });

  it('is exact for every n up to 3,072 through the small and sparse levels, and ignores repeats', () => {
    const hs = hashes(0, 3072);
    expect(new Set(hs).size).toBe(3072); // precondition: no 32-bit collision among the test items
    const c = new DistinctCounter();
    expect(c.estimate()).toBe(0);
    for (let i = 0; i < hs.length; i++) {
      c.add(hs[i]!);
      expect(c.estimate()).toBe(i + 1);
      if (i % 97 === 0) {
        c.add(hs[i >> 1]!);
        expect(c.estimate()).toBe(i + 1);
      }
    }
    for (const h of hs) c.add(h);
    expect(c.estimate()).toBe(3072);
    expect(level(c)).toBe('sparse');
    c.add(hashString('item-3072'));
    expect(level(c)).toBe('dense');
    expect(relErr(c.estimate(), 3073)).toBeLessThan(0.035);
  });

  it('switches levels at 17 and 3,073 items', () => {
    expect(level(counterOf(hashes(0, 16)))).toBe('small');
    expect(level(counterOf(hashes(0, 17)))).toBe('sparse');
    expect(level(counterOf(hashes(0, 3072)))).toBe('sparse');
    expect(level(counterOf(hashes(0, 3073)))).toBe('dense');
  });

  it('counts hash 0 (the empty-slot marker) like any other hash, on every level', () => {
    for (const n of [0, 5, 100]) {
      const c = counterOf(hashes(0, n));
      c.add(0);
      c.add(0);
      expect(c.estimate()).toBe(n + 1);
    }
  });

  it('is exact for arbitrary small multisets of hashes', () => {
    const arb = fc.array(fc.integer({ min: 1, max: 0xffffffff }), { maxLength: 300 });
    fc.assert(
      fc.property(arb, fc.integer({ min: 0, max: 500 }), (hs, repeatEvery) => {
        const c = new DistinctCounter();
        hs.forEach((h, i) => {
          c.add(h);
          if (repeatEvery > 0 && i % repeatEvery === 0) c.add(hs[0]!);
        });
        expect(c.estimate()).toBe(new Set(hs).size);
      }),
      FC,
    );
  });

  it('estimates within 2% on average and 3.5% always for n from 5,000 to 1,000,000', () => {
    const checkpoints = [5_000, 10_000, 50_000, 100_000, 1_000_000];
    const seeds = [1, 2, 3, 4, 5, 6];
    const errs = new Map<number, number[]>(checkpoints.map((n) => [n, []]));
    for (const seed of seeds) {
      const c = new DistinctCounter();
      let next = 0;
      for (const n of checkpoints) {
        for (; next < n; next++) c.add(hashString(`item-${next}`, seed));
        errs.get(n)!.push((c.estimate() - n) / n);
      }
    }
    const rows = checkpoints.map((n) => {
      const e = errs.get(n)!;
      const mean = e.reduce((s, x) => s + Math.abs(x), 0) / e.length;
      const max = Math.max(...e.map(Math.abs));
      return { n, meanAbsErrPct: +(100 * mean).toFixed(3), maxAbsErrPct: +(100 * max).toFixed(3) };
    });
    console.log(`DistinctCounter relative error over ${seeds.length} seeds:\n${rows.map((r) => JSON.stringify(r)).join('\n')}`);
    for (const r of rows) {
      expect(r.meanAbsErrPct, `mean error at n=${r.n}`).toBeLessThan(2);
      expect(r.maxAbsErrPct, `max error at n=${r.n}`).toBeLessThan(3.5);
    }
  });

  describe('merge', () => {
    const sizes = { small: 10, sparse: 1_000, dense: 20_000 } as const;
    type Level = keyof typeof sizes;
    const levels = Object.keys(sizes) as Level[];

    /** A at [0, nA), B at [nA − overlap, …): overlapping sets whose true union is known. */
    function pair(la: Level, lb: Level): { a: DistinctCounter; b: DistinctCounter; union: number; unionHashes: number[] } {
      const nA = sizes[la];
      const nB = sizes[lb];
      const overlap = Math.floor(Math.min(nA, nB) / 2);
      const start = nA - overlap;
      return {
        a: counterOf(hashes(0, nA)),
        b: counterOf(hashes(start, nB)),
        union: start + nB,
        unionHashes: hashes(0, start + nB),
      };
    }

    for (const la of levels) {
      for (const lb of levels) {
        it(`${la} ∪ ${lb}: within 2% of the true union (exact up to 3,072), commutative, argument unchanged`, () => {
          const { a, b, union, unionHashes } = pair(la, lb);
          expect([level(a), level(b)]).toEqual([la, lb]);
          const aBefore = JSON.stringify(a);
          const bBefore = JSON.stringify(b);
          const ab = a.clone();
          ab.merge(b);
          const ba = b.clone();
          ba.merge(a);
          expect(JSON.stringify(a)).toBe(aBefore);
          expect(JSON.stringify(b)).toBe(bBefore);
          expect(ab.estimate()).toBe(ba.estimate());
          if (union <= 3072) expect(ab.estimate()).toBe(union);
          else expect(relErr(ab.estimate(), union)).toBeLessThan(0.02);
          // The same state as counting the union directly: registers equal when dense.
          const direct = counterOf(unionHashes);
          expect(level(ab)).toBe(level(direct));
          expect(ab.estimate()).toBe(direct.estimate());
          if (level(direct) === 'dense') {
            expect(ab.toJSON()).toEqual(direct.toJSON());
            expect(ba.toJSON()).toEqual(direct.toJSON());
          }
        });
      }
    }

    it('stays exact when a union of sparse counters fits in 3,072', () => {
      const a = counterOf(hashes(0, 2_000));
      a.merge(counterOf(hashes(1_000, 2_000)));
      expect(a.estimate()).toBe(3_000);
      expect(level(a)).toBe('sparse');
    });

    it('equals counting the concatenation, for any split into parts', () => {
      const arb = fc.array(fc.array(fc.integer({ min: 0, max: 5_000 }), { maxLength: 1_500 }), { minLength: 1, maxLength: 6 });
      fc.assert(
        fc.property(arb, (parts) => {
          const merged = new DistinctCounter();
          const all: number[] = [];
          for (const p of parts) {
            const hs = p.map((i) => hashString(`item-${i}`));
            merged.merge(counterOf(hs));
            all.push(...hs);
          }
          const direct = counterOf(all);
          expect(merged.estimate()).toBe(direct.estimate());
          if (level(direct) === 'dense') expect(merged.toJSON()).toEqual(direct.toJSON());
        }),
        { ...FC, numRuns: 60 },
      );
    });

    it('with itself changes nothing', () => {
      for (const n of [3, 500, 10_000]) {
        const c = counterOf(hashes(0, n));
        const before = JSON.stringify(c);
        c.merge(c);
        expect(JSON.stringify(c)).toBe(before);
      }
    });

    it('into an empty counter copies, and does not share storage with the argument', () => {
      for (const n of [0, 3, 500, 10_000]) {
        const src = counterOf(hashes(0, n));
        const before = JSON.stringify(src);
        const c = new DistinctCounter();
        c.merge(src);
        expect(c.estimate()).toBe(src.estimate());
        for (const h of hashes(50_000, 5_000)) c.add(h);
        expect(JSON.stringify(src)).toBe(before);
      }
    });
  });

  it('clone is independent at every level', () => {
    for (const n of [0, 1, 10, 1_000, 10_000]) {
      const a = counterOf(hashes(0, n));
      const b = a.clone();
      expect(b.estimate()).toBe(a.estimate());
      const before = JSON.stringify(a);
      for (const h of hashes(100_000, 5_000)) b.add(h);
      expect(JSON.stringify(a)).toBe(before);
      for (const h of hashes(200_000, 5_000)) a.add(h);
      const bAfter = JSON.stringify(b);
      expect(bAfter).toBe(JSON.stringify(counterOf([...hashes(0, n), ...hashes(100_000, 5_000)])));
    }
  });

  describe('toJSON / fromJSON', () => {
    for (const [name, n] of [
      ['empty', 0],
      ['small', 12],
      ['sparse', 2_500],
      ['dense', 40_000],
    ] as const) {
      it(`round-trips a ${name} counter: same estimate, and further adds behave the same`, () => {
        const a = counterOf(hashes(0, n));
        const json = JSON.parse(JSON.stringify(a)) as unknown;
        const b = DistinctCounter.fromJSON(json);
        expect(level(b)).toBe(level(a));
        expect(b.estimate()).toBe(a.estimate());
        // Step through the next levels: the same adds give the same estimates all the way.
        for (const more of [3, 30, 3_000, 20_000]) {
          const hs = hashes(1_000_000 + more, more);
          for (const h of hs) {
            a.add(h);
            b.add(h);
          }
          expect(b.estimate()).toBe(a.estimate());
          expect(level(b)).toBe(level(a));
        }
        expect(b.toJSON()).toEqual(a.toJSON()); // both dense now: identical registers
      });
    }

    it('writes the small level as plain unsigned hashes', () => {
      const c = counterOf([1, 0xffffffff, 0x80000000]);
      expect(c.toJSON()).toEqual({ v: 1, level: 'small', hashes: [1, 0xffffffff, 0x80000000] });
    });

    const dense = JSON.parse(JSON.stringify(counterOf(hashes(0, 4_000)))) as { registers: string };
    const b64 = (bytes: number[]) => Buffer.from(bytes).toString('base64');
    it.each([
      ['null', null, /expected an object/],
      ['an array', [], /expected an object/],
      ['a wrong version', { v: 2, level: 'small', hashes: [] }, /version/],
      ['an unknown level', { v: 1, level: 'medium', hashes: [] }, /'level'/],
      ['small without hashes', { v: 1, level: 'small' }, /'hashes'/],
      ['a fractional hash', { v: 1, level: 'small', hashes: [1.5] }, /hashes\[0\]/],
      ['a hash of 0', { v: 1, level: 'small', hashes: [3, 0] }, /hashes\[1\]/],
      ['a hash ≥ 2^32', { v: 1, level: 'small', hashes: [2 ** 32] }, /hashes\[0\]/],
      ['a repeated small hash', { v: 1, level: 'small', hashes: [7, 7] }, /repeats/],
      ['17 small hashes', { v: 1, level: 'small', hashes: hashes(0, 17) }, /at most 16/],
      ['sparse hashes not base64', { v: 1, level: 'sparse', hashes: 'not base64!' }, /base64/],
      ['sparse hashes not a string', { v: 1, level: 'sparse', hashes: [1, 2] }, /base64/],
      ['a partial uint32', { v: 1, level: 'sparse', hashes: b64([1, 2, 3, 4, 5, 6, 7, 8]).slice(0, 8) }, /uint32/],
      ['a sparse hash of 0', { v: 1, level: 'sparse', hashes: b64([1, 0, 0, 0, 0, 0, 0, 0]) }, /is 0/],
      ['a repeated sparse hash', { v: 1, level: 'sparse', hashes: b64([1, 0, 0, 0, 1, 0, 0, 0]) }, /repeats/],
      ['3,073 sparse hashes', { v: 1, level: 'sparse', hashes: b64(new Array<number>(4 * 3073).fill(1)) }, /at most 3072/],
      ['short registers', { v: 1, level: 'dense', registers: b64([1, 2, 3]) }, /16384 bytes/],
      ['a register above 19', { v: 1, level: 'dense', registers: b64(Array.from({ length: 16384 }, (_, i) => (i === 5 ? 20 : 1))) }, /register 5 is 20/],
      ['dense without registers', { v: 1, level: 'dense', hashes: dense.registers }, /'registers'/],
    ])('fromJSON rejects %s with a TypeError', (_name, input, message) => {
      expect(() => DistinctCounter.fromJSON(input)).toThrow(TypeError);
      expect(() => DistinctCounter.fromJSON(input)).toThrow(message);
    });
  });

  it('reports ~100 bytes for a tiny counter and ~16 KB when dense', () => {
    expect(new DistinctCounter().byteSize()).toBeLessThan(100);
    expect(counterOf(hashes(0, 1)).byteSize()).toBeLessThan(200);
    expect(counterOf(hashes(0, 2)).byteSize()).toBeLessThan(200);
    const sparse = counterOf(hashes(0, 3_000)).byteSize();
    expect(sparse).toBeGreaterThan(16_384);
    expect(sparse).toBeLessThan(17_000);
    const dense = counterOf(hashes(0, 10_000)).byteSize();
    expect(dense).toBeGreaterThan(16_384);
    expect(dense).toBeLessThan(17_000);
  });
});

describe('SpaceSaving', () => {
  type Item = { key: string; weight: number };
  const alphabet = 'abcdefghijklmnopqrst'.split('');
  /** Streams skewed toward the first letters, so some keys are frequent and many are rare. */
  const stream = fc.array(
    fc.record({
      key: fc.oneof(fc.constantFrom(...alphabet.slice(0, 3)), fc.constantFrom(...alphabet)),
      weight: fc.integer({ min: 1, max: 3 }),
    }),
    { maxLength: 300 },
  );

  function build(capacity: number, items: Item[]): SpaceSaving {
    const s = new SpaceSaving(capacity);
    for (const { key, weight } of items) s.add(key, weight);
    return s;
  }

  function truth(items: Item[]): Map<string, number> {
    const m = new Map<string, number>();
    for (const { key, weight } of items) m.set(key, (m.get(key) ?? 0) + weight);
    return m;
  }

  /** The Space-Saving guarantees of `s` with respect to `items`. */
  function checkGuarantee(s: SpaceSaving, items: Item[]): void {
    const t = truth(items);
    const n = items.reduce((acc, x) => acc + x.weight, 0);
    expect(s.total).toBe(n);
    expect(s.size).toBeLessThanOrEqual(s.capacity);
    const top = s.top(s.capacity);
    expect(top.length).toBe(s.size);
    const held = new Set(top.map((e) => e.key));
    for (const [key, f] of t) if (f > n / s.capacity) expect(held.has(key), `key ${key} with ${f} of ${n} is held`).toBe(true);
    for (const e of top) {
      const f = t.get(e.key) ?? 0;
      expect(e.count - e.error).toBeLessThanOrEqual(f);
      expect(f).toBeLessThanOrEqual(e.count);
      expect(e.error).toBeGreaterThanOrEqual(0);
    }
  }

  it('holds every key above total/k and brackets each true count', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), stream, (k, items) => {
        checkGuarantee(build(k, items), items);
      }),
      FC,
    );
  });

  it('keeps the guarantee for the combined stream after a merge, in either order, and after more adds', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), stream, fc.nat(), fc.nat(), (k, items, cut1, cut2) => {
        const i = cut1 % (items.length + 1);
        const j = i + (cut2 % (items.length - i + 1));
        const [p1, p2, p3] = [items.slice(0, i), items.slice(i, j), items.slice(j)];
        const a = build(k, p1);
        const b = build(k, p2);
        const bBefore = JSON.stringify(b);
        const ab = a.clone();
        ab.merge(b);
        const ba = b.clone();
        ba.merge(a);
        expect(JSON.stringify(b)).toBe(bBefore);
        expect(ab.top(k)).toEqual(ba.top(k));
        checkGuarantee(ab, [...p1, ...p2]);
        for (const { key, weight } of p3) ab.add(key, weight);
        checkGuarantee(ab, items);
        // Three parts merged both ways round.
        const left = build(k, p1);
        left.merge(build(k, p2));
        left.merge(build(k, p3));
        const right = build(k, p2);
        right.merge(build(k, p3));
        const c = build(k, p1);
        c.merge(right);
        checkGuarantee(left, items);
        checkGuarantee(c, items);
      }),
      FC,
    );
  });

  it('is exact when there are at most k distinct keys', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), stream, (k, raw) => {
        const items = raw.filter((x) => alphabet.indexOf(x.key) < k);
        const s = build(k, items);
        const t = truth(items);
        expect(s.size).toBe(t.size);
        for (const e of s.top(k)) {
          expect(e.count).toBe(t.get(e.key));
          expect(e.error).toBe(0);
        }
        const half = Math.floor(items.length / 2);
        const m = build(k, items.slice(0, half));
        m.merge(build(k, items.slice(half)));
        expect(m.top(k)).toEqual(s.top(k));
      }),
      FC,
    );
  });

  it('is deterministic, and round-trips through JSON so further adds replay identically', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), stream, stream, (k, items, more) => {
        const a = build(k, items);
        const b = build(k, items);
        expect(JSON.stringify(a)).toBe(JSON.stringify(b));
        const c = SpaceSaving.fromJSON(JSON.parse(JSON.stringify(a)));
        for (const { key, weight } of more) {
          a.add(key, weight);
          c.add(key, weight);
        }
        expect(c.toJSON()).toEqual(a.toJSON());
      }),
      FC,
    );
  });

  it('replaces the first minimum slot: count = min + weight, error = min', () => {
    const s = new SpaceSaving(2);
    s.add('a');
    s.add('b');
    s.add('c', 3);
    expect(s.top(5)).toEqual([
      { key: 'c', count: 4, error: 1 },
      { key: 'b', count: 1, error: 0 },
    ]);
    expect(s.maxCount()).toBe(4);
    expect(s.total).toBe(5);
  });

  it('orders top by count descending, then key ascending, and truncates to n', () => {
    const s = new SpaceSaving(8);
    for (const [k, w] of [['b', 2], ['a', 2], ['c', 5], ['d', 1]] as const) s.add(k, w);
    expect(s.top(3).map((e) => e.key)).toEqual(['c', 'a', 'b']);
    expect(s.top(0)).toEqual([]);
    expect(s.top(100).length).toBe(4);
  });

  it('is empty and tiny before the first add, and clone is independent', () => {
    const s = new SpaceSaving(16);
    expect(s.size).toBe(0);
    expect(s.total).toBe(0);
    expect(s.maxCount()).toBe(0);
    expect(s.top(5)).toEqual([]);
    expect(s.byteSize()).toBeLessThan(100);
    s.add('/x');
    const c = s.clone();
    c.add('/x');
    c.add('/y');
    expect(s.top(5)).toEqual([{ key: '/x', count: 1, error: 0 }]);
    expect(c.top(5)).toEqual([
      { key: '/x', count: 2, error: 0 },
      { key: '/y', count: 1, error: 0 },
    ]);
    expect(s.byteSize()).toBeLessThan(c.byteSize());
  });

  it('merging with itself doubles every count', () => {
    const s = build(4, [{ key: 'a', weight: 2 }, { key: 'b', weight: 1 }]);
    s.merge(s);
    expect(s.top(4)).toEqual([
      { key: 'a', count: 4, error: 0 },
      { key: 'b', count: 2, error: 0 },
    ]);
    expect(s.total).toBe(6);
  });

  it('rejects bad capacities, weights, merges and top sizes with RangeErrors', () => {
    for (const k of [0, -1, 1.5, NaN, 1025]) expect(() => new SpaceSaving(k)).toThrow(RangeError);
    const s = new SpaceSaving(4);
    for (const w of [0, -1, NaN, Infinity]) expect(() => s.add('a', w)).toThrow(RangeError);
    expect(s.total).toBe(0);
    expect(() => s.merge(new SpaceSaving(5))).toThrow(/capacities differ/);
    expect(() => s.top(-1)).toThrow(RangeError);
  });

  it.each([
    ['null', null, /expected an object/],
    ['a wrong version', { v: 0, capacity: 4, total: 0, entries: [] }, /version/],
    ['a bad capacity', { v: 1, capacity: 0, total: 0, entries: [] }, /'capacity'/],
    ['a negative total', { v: 1, capacity: 4, total: -1, entries: [] }, /'total'/],
    ['entries not an array', { v: 1, capacity: 4, total: 0, entries: {} }, /'entries'/],
    ['more entries than capacity', { v: 1, capacity: 1, total: 2, entries: [['a', 1, 0], ['b', 1, 0]] }, /more than capacity/],
    ['a short entry', { v: 1, capacity: 4, total: 1, entries: [['a', 1]] }, /entries\[0\]/],
    ['a non-string key', { v: 1, capacity: 4, total: 1, entries: [[1, 1, 0]] }, /entries\[0\]\[0\]/],
    ['a repeated key', { v: 1, capacity: 4, total: 2, entries: [['a', 1, 0], ['a', 1, 0]] }, /repeats/],
    ['a zero count', { v: 1, capacity: 4, total: 1, entries: [['a', 0, 0]] }, /entries\[0\]\[1\]/],
    ['an error above the count', { v: 1, capacity: 4, total: 1, entries: [['a', 1, 2]] }, /entries\[0\]\[2\]/],
  ])('fromJSON rejects %s with a TypeError', (_name, input, message) => {
    expect(() => SpaceSaving.fromJSON(input)).toThrow(TypeError);
    expect(() => SpaceSaving.fromJSON(input)).toThrow(message);
  });
});
